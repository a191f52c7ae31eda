//! Generated ids → an OpenAI-style assistant reply, as the ids stream.
//!
//! A gpt-oss turn is several harmony messages: reasoning on `analysis`, an answer on `final`,
//! perhaps a preamble on `commentary`, and function calls on `commentary` addressed
//! `to=functions.NAME`. OpenAI-compatible servers (vLLM) show them as one message: the
//! analysis text as `reasoning_content`, the final and preamble text as `content`, and each
//! call as a `tool_calls` entry whose arguments are the message's text. [`ReplyAssembler`]
//! routes every piece of text to its place as soon as it is known, so that the pieces it
//! hands out, put together, are exactly the whole reply however the ids are cut.
//!
//! A model that breaks the harmony grammar does not lose its output: from the first id that
//! does not fit, the rest is decoded as plain content and the reply is marked malformed.

use super::parser::{ParserState, StreamParser};
use super::{Message, Role};
use crate::{Detokenizer, Tokenizer};

/// Calls to these tools go to the client as `tool_calls`.
const FUNCTIONS_PREFIX: &str = "functions.";

/// A piece of a reply, in the order it was generated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyDelta {
    /// More reasoning text (`analysis`).
    Reasoning(String),
    /// More answer text (`final`, or a `commentary` preamble).
    Content(String),
    /// A tool call begins: its place among the reply's calls, and the function's name.
    ToolCallStart { index: usize, name: String },
    /// More of the arguments (JSON text) of call `index`.
    ToolCallArguments { index: usize, arguments: String },
}

/// One function call of a reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplyToolCall {
    /// The function's name, without the `functions.` namespace.
    pub name: String,
    /// The arguments as the model wrote them (JSON text, not checked).
    pub arguments: String,
}

/// A whole reply; empty strings are parts the model did not write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssistantReply {
    pub reasoning: String,
    pub content: String,
    pub tool_calls: Vec<ReplyToolCall>,
    /// The ids broke the harmony grammar; what followed is in `content` as decoded text.
    pub malformed: bool,
}

impl AssistantReply {
    /// Adds `delta` to the reply.
    pub fn apply(&mut self, delta: &ReplyDelta) {
        match delta {
            ReplyDelta::Reasoning(text) => self.reasoning.push_str(text),
            ReplyDelta::Content(text) => self.content.push_str(text),
            ReplyDelta::ToolCallStart { index, name } => {
                if self.tool_calls.len() <= *index {
                    self.tool_calls
                        .resize_with(index + 1, ReplyToolCall::default);
                }
                self.tool_calls[*index].name = name.clone();
            }
            ReplyDelta::ToolCallArguments { index, arguments } => {
                if self.tool_calls.len() <= *index {
                    self.tool_calls
                        .resize_with(index + 1, ReplyToolCall::default);
                }
                self.tool_calls[*index].arguments.push_str(arguments);
            }
        }
    }
}

/// Where the text of the message being read goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Reasoning,
    Content,
    ToolCall(usize),
}

/// Builds an [`AssistantReply`] from ids generated after a prompt that ends with
/// `<|start|>assistant` (a harmony completion prompt).
#[derive(Clone, Debug)]
pub struct ReplyAssembler {
    parser: StreamParser,
    /// Where the open message's text goes, and how many of its bytes were handed out.
    open: Option<(Route, usize)>,
    n_tool_calls: usize,
    /// After a grammar error: the rest is decoded as plain text.
    raw: Option<Detokenizer>,
    reply: AssistantReply,
}

impl Default for ReplyAssembler {
    fn default() -> ReplyAssembler {
        ReplyAssembler::new()
    }
}

impl ReplyAssembler {
    pub fn new() -> ReplyAssembler {
        ReplyAssembler {
            parser: StreamParser::new(Some(Role::Assistant)),
            open: None,
            n_tool_calls: 0,
            raw: None,
            reply: AssistantReply::default(),
        }
    }

    /// Consumes one generated id and returns the pieces of reply it completes.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Vec<ReplyDelta> {
        let mut deltas = Vec::new();
        if let Some(detok) = &mut self.raw {
            push_text(&mut deltas, Route::Content, detok.push(tokenizer, id));
        } else if self.parser.push(tokenizer, id).is_err() {
            self.break_grammar(tokenizer, id, &mut deltas);
        } else {
            self.collect(&mut deltas);
        }
        self.record(&deltas);
        deltas
    }

    /// Ends the stream (the model stopped, or ran out of tokens): text held back in the open
    /// message is handed out. A stream cut inside a header marks the reply malformed.
    pub fn finish(&mut self) -> Vec<ReplyDelta> {
        let mut deltas = Vec::new();
        if let Some(detok) = self.raw.take() {
            push_text(&mut deltas, Route::Content, detok.finish());
            // Keep later pushes in plain-text mode.
            self.raw = Some(Detokenizer::new(false));
        } else if self.parser.finish().is_err() {
            self.reply.malformed = true;
        } else {
            self.collect(&mut deltas);
        }
        self.record(&deltas);
        deltas
    }

    /// The reply so far.
    pub fn reply(&self) -> &AssistantReply {
        &self.reply
    }

    pub fn into_reply(self) -> AssistantReply {
        self.reply
    }

    /// The harmony messages completed so far (to keep a conversation's history).
    pub fn messages(&self) -> &[Message] {
        self.parser.messages()
    }

    /// Hands out the text the parser gained since the last call, routed by the header of the
    /// message it belongs to.
    fn collect(&mut self, deltas: &mut Vec<ReplyDelta>) {
        let n_done = self.parser.messages().len();
        if let Some((route, emitted)) = self.open {
            match self.parser.state() {
                ParserState::Content => {
                    let text = self.parser.current_content();
                    push_text(deltas, route, tail(text, emitted));
                    self.open = Some((route, text.len()));
                    return;
                }
                // The open message ended: it is the last one completed.
                _ => {
                    let text = self
                        .parser
                        .messages()
                        .get(n_done.wrapping_sub(1))
                        .map(Message::text_content)
                        .unwrap_or_default();
                    push_text(deltas, route, tail(&text, emitted));
                    self.open = None;
                }
            }
        }
        if self.parser.state() == ParserState::Content && self.open.is_none() {
            let route = self.route_of_open_message(deltas);
            let text = self.parser.current_content();
            push_text(deltas, route, text.to_string());
            self.open = Some((route, text.len()));
        }
    }

    /// Decides where the message whose header was just read goes; a function call starts a
    /// new tool call.
    fn route_of_open_message(&mut self, deltas: &mut Vec<ReplyDelta>) -> Route {
        if let Some(name) = self
            .parser
            .current_recipient()
            .and_then(|r| r.strip_prefix(FUNCTIONS_PREFIX))
        {
            let index = self.n_tool_calls;
            self.n_tool_calls += 1;
            deltas.push(ReplyDelta::ToolCallStart {
                index,
                name: name.to_string(),
            });
            return Route::ToolCall(index);
        }
        match self.parser.current_channel() {
            Some("final") => Route::Content,
            // A preamble to the user, written before tool calls.
            Some("commentary") if self.parser.current_recipient().is_none() => Route::Content,
            // Reasoning, and calls to built-in tools (browser, python), which run on analysis.
            Some(_) => Route::Reasoning,
            None => Route::Content,
        }
    }

    /// From `id` on the ids are plain text: the open message's held-back text and `id` itself
    /// go to the content.
    fn break_grammar(&mut self, tokenizer: &Tokenizer, id: u32, deltas: &mut Vec<ReplyDelta>) {
        self.reply.malformed = true;
        if let Some((route, emitted)) = self.open.take() {
            let text = self.parser.current_content();
            push_text(deltas, route, tail(text, emitted));
        }
        let mut detok = Detokenizer::new(false);
        push_text(deltas, Route::Content, detok.push(tokenizer, id));
        self.raw = Some(detok);
    }

    fn record(&mut self, deltas: &[ReplyDelta]) {
        for delta in deltas {
            self.reply.apply(delta);
        }
    }
}

/// `text` after its first `emitted` bytes (`emitted` is an earlier length of the same growing
/// text, so a character boundary).
fn tail(text: &str, emitted: usize) -> String {
    text.get(emitted..).unwrap_or_default().to_string()
}

fn push_text(deltas: &mut Vec<ReplyDelta>, route: Route, text: String) {
    if text.is_empty() {
        return;
    }
    deltas.push(match route {
        Route::Reasoning => ReplyDelta::Reasoning(text),
        Route::Content => ReplyDelta::Content(text),
        Route::ToolCall(index) => ReplyDelta::ToolCallArguments {
            index,
            arguments: text,
        },
    });
}
