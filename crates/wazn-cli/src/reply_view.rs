//! An answer as it streams to the terminal. A harmony model's ids are read with the
//! incremental harmony parser: the reasoning (`analysis`) is shown dimmed, when stdout is a
//! terminal, the final answer plainly, and tool calls as `→ name(arguments)`. Other models'
//! text is shown as it comes.

use std::io::{IsTerminal, Write};

use wazn_engine::Event;
use wazn_text::harmony::{AssistantReply, ReplyAssembler, ReplyDelta};
use wazn_text::Tokenizer;

const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// What part of a reply is being printed, to separate the parts by a line break.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Nothing,
    Reasoning,
    Content,
    ToolCall,
}

pub struct ReplyView {
    /// Harmony models only.
    assembler: Option<ReplyAssembler>,
    /// Whether to print at all (`--json` prints once at the end).
    show: bool,
    dim: bool,
    part: Part,
    /// The text of a non-harmony answer.
    text: String,
}

impl ReplyView {
    pub fn new(harmony: bool, show: bool) -> ReplyView {
        ReplyView {
            assembler: harmony.then(ReplyAssembler::new),
            show,
            dim: std::io::stdout().is_terminal(),
            part: Part::Nothing,
            text: String::new(),
        }
    }

    /// Takes one event of the answer's sequence and prints what it adds.
    pub fn on_event(&mut self, tokenizer: &Tokenizer, event: &Event) -> std::io::Result<()> {
        let Some(assembler) = &mut self.assembler else {
            self.text.push_str(&event.text);
            return self.print_plain(&event.text);
        };
        let mut deltas = Vec::new();
        if let Some(token) = event.token {
            deltas.extend(assembler.push(tokenizer, token));
        }
        if event.finished.is_some() {
            deltas.extend(assembler.finish());
        }
        for delta in &deltas {
            self.print_delta(delta)?;
        }
        Ok(())
    }

    /// Ends the answer on the terminal (a reset of the dim style, a line break).
    pub fn end(&mut self) -> std::io::Result<()> {
        if !self.show {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        if self.dim && self.part == Part::Reasoning {
            out.write_all(RESET.as_bytes())?;
        }
        if self.part == Part::ToolCall {
            out.write_all(b")")?;
        }
        writeln!(out)?;
        out.flush()
    }

    /// The harmony reply, for harmony models.
    pub fn reply(&self) -> Option<&AssistantReply> {
        self.assembler.as_ref().map(ReplyAssembler::reply)
    }

    /// The answer to keep in the conversation: a harmony model's final text (its reasoning
    /// is not shown to it again), or the whole text.
    pub fn answer(&self) -> String {
        match self.reply() {
            Some(reply) => reply.content.clone(),
            None => self.text.clone(),
        }
    }

    fn print_plain(&self, text: &str) -> std::io::Result<()> {
        if !self.show {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    fn print_delta(&mut self, delta: &ReplyDelta) -> std::io::Result<()> {
        if !self.show {
            return Ok(());
        }
        let (part, text) = match delta {
            ReplyDelta::Reasoning(text) => (Part::Reasoning, text.clone()),
            ReplyDelta::Content(text) => (Part::Content, text.clone()),
            ReplyDelta::ToolCallStart { name, .. } => (Part::ToolCall, format!("→ {name}(")),
            ReplyDelta::ToolCallArguments { arguments, .. } => (Part::ToolCall, arguments.clone()),
        };
        let mut out = std::io::stdout().lock();
        let starts_call = matches!(delta, ReplyDelta::ToolCallStart { .. });
        if part != self.part || starts_call {
            if self.dim && self.part == Part::Reasoning {
                out.write_all(RESET.as_bytes())?;
            }
            if self.part == Part::ToolCall {
                out.write_all(b")")?;
            }
            if self.part != Part::Nothing {
                out.write_all(b"\n")?;
            }
            if self.dim && part == Part::Reasoning {
                out.write_all(DIM.as_bytes())?;
            }
            self.part = part;
        }
        out.write_all(text.as_bytes())?;
        out.flush()
    }
}
