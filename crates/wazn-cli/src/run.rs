//! `wazn run`: one prompt, one completion, streamed.

use std::io::Write;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use wazn_engine::{Constraint, Engine, Event, GrammarCompiler, GrammarSpec, Request};
use wazn_text::ChatMessage;

use crate::options::{
    max_tokens, reasoning_effort, tokenize_chat, ModelArgs, Reasoning, SamplingArgs,
};
use crate::reply_view::ReplyView;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The prompt.
    pub prompt: String,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Tokens to generate (-1 = until the end of generation or of the context).
    #[arg(
        short = 'n',
        long = "n-predict",
        default_value_t = 256,
        allow_hyphen_values = true
    )]
    pub n_predict: i64,
    /// Apply the model's chat template, with the prompt as the user's message.
    #[arg(long)]
    pub chat: bool,
    /// System message (with --chat).
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// Reasoning effort of a harmony model (gpt-oss), with --chat; an error for other
    /// models [default: medium].
    #[arg(long, value_enum, requires = "chat")]
    pub reasoning: Option<Reasoning>,
    /// Stop when this text appears (may be given more than once).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Keep generating past end-of-generation tokens.
    #[arg(long = "ignore-eos")]
    pub ignore_eos: bool,
    /// Print one JSON object (prompt_ids, ids, text, ...) instead of streaming text; with
    /// --chat and a harmony model also `reasoning`, `content` and `tool_calls`.
    #[arg(long)]
    pub json: bool,
    /// With --json: the K most likely tokens and their log-probabilities at every step.
    #[arg(long = "logprobs", value_name = "K", default_value_t = 0)]
    pub logprobs: usize,
    /// Constrain the output to JSON valid under the JSON schema in FILE.
    #[arg(long = "json-schema", value_name = "FILE", conflicts_with = "grammar")]
    pub json_schema: Option<PathBuf>,
    /// Constrain the output to the grammar in FILE (llguidance's Lark dialect; a file that
    /// holds a single regular expression can be written `start: /REGEX/`).
    #[arg(long, value_name = "FILE")]
    pub grammar: Option<PathBuf>,
}

/// The output constraint that --json-schema or --grammar asks for.
fn constraint(args: &RunArgs, engine: &Engine, harmony_chat: bool) -> Result<Option<Constraint>> {
    let spec = match (&args.json_schema, &args.grammar) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let schema = serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", path.display()))?;
            GrammarSpec::JsonSchema(schema)
        }
        (None, Some(path)) => GrammarSpec::Lark(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        (None, None) => return Ok(None),
    };
    if harmony_chat {
        bail!("--json-schema and --grammar are not supported with harmony chats (gpt-oss) yet");
    }
    let compiler = GrammarCompiler::new(engine.shared_tokenizer())?;
    Ok(Some(compiler.compile(&spec)?))
}

pub fn run(args: RunArgs) -> Result<()> {
    if args.logprobs > 0 && !args.json {
        bail!("--logprobs needs --json");
    }
    let mut engine = args.model.load()?;
    let harmony_chat = args.chat && engine.chat_format().is_some_and(|f| f.is_harmony());
    let prompt_ids = if args.chat {
        let effort = reasoning_effort(&engine, args.reasoning)?;
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(ChatMessage::new("system", system));
        }
        messages.push(ChatMessage::new("user", &args.prompt));
        tokenize_chat(&engine, &messages, effort)?
    } else {
        // As llama.cpp's completion tools: the model's BOS rule, special tokens parsed.
        engine.tokenizer().encode(&args.prompt, true, true)?
    };
    let request = Request {
        prompt_ids: prompt_ids.clone(),
        sampler: args.sampling.params(),
        max_tokens: max_tokens(args.n_predict),
        stop: args.stop.clone(),
        top_logprobs: args.logprobs,
        ignore_eos: args.ignore_eos,
        constraint: constraint(&args, &engine, harmony_chat)?,
        prompt_scoring: None,
        embedding: None,
    };
    let seq_id = engine.add_request(request)?;

    let mut ids = Vec::new();
    let mut text = String::new();
    let mut top_logprobs = Vec::new();
    let mut finish_reason = "stop";
    let mut view = ReplyView::new(harmony_chat, !args.json);
    while engine.has_work() {
        for event in engine.step()? {
            if event.seq_id != seq_id {
                continue;
            }
            record(&event, &mut ids, &mut text, &mut top_logprobs);
            view.on_event(engine.tokenizer(), &event)?;
            if let Some(reason) = event.finished {
                finish_reason = reason.as_str();
            }
        }
    }

    let stats = engine.stats();
    if args.json {
        let mut doc = json!({
            "prompt_ids": prompt_ids,
            "ids": ids,
            "text": text,
            "finish_reason": finish_reason,
            "timings": {
                "prompt_tokens": stats.n_prompt_tokens,
                "prompt_tokens_per_second": stats.prompt_tokens_per_second(),
                "generated_tokens": ids.len(),
                "generation_tokens_per_second": stats.generation_tokens_per_second(),
            },
        });
        if args.logprobs > 0 {
            doc["top_logprobs"] = json!(top_logprobs);
        }
        if let Some(reply) = view.reply() {
            doc["reasoning"] = json!(reply.reasoning);
            doc["content"] = json!(reply.content);
            doc["tool_calls"] = reply
                .tool_calls
                .iter()
                .map(|c| json!({ "name": c.name, "arguments": c.arguments }))
                .collect();
            if !reply.tool_calls.is_empty() && finish_reason == "stop" {
                finish_reason = "tool_calls";
            }
            doc["finish_reason"] = json!(finish_reason);
        }
        writeln!(std::io::stdout().lock(), "{doc}")?;
    } else {
        view.end()?;
    }
    print_timings(&engine);
    Ok(())
}

fn record(event: &Event, ids: &mut Vec<u32>, text: &mut String, top: &mut Vec<Vec<(u32, f32)>>) {
    if let Some(token) = event.token {
        ids.push(token);
        top.push(event.top_logprobs.clone());
    }
    text.push_str(&event.text);
}

/// The timing line on stderr, as llama.cpp prints it.
pub fn print_timings(engine: &Engine) {
    let s = engine.stats();
    eprintln!(
        "prompt: {} tokens in {:.2} s ({:.1} tokens/s) | generation: {} tokens in {:.2} s ({:.1} tokens/s)",
        s.n_prompt_tokens,
        s.prompt_time.as_secs_f64(),
        s.prompt_tokens_per_second(),
        s.n_generated_tokens,
        s.generation_time.as_secs_f64(),
        s.generation_tokens_per_second()
    );
}
