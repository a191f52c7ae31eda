//! Hermes / Qwen calls: `<tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>`, one block
//! per call, possibly after some text. Written by NousResearch's Hermes 2 Pro / 3, Qwen 2.5 and
//! Qwen 3, SmolLM3 and the many models trained on their templates.
//!
//! Parsing follows vLLM's `hermes` tool parser: the text before the first block is the answer,
//! each block's JSON is one call, a block the output ends inside still counts when its JSON is
//! complete, and a block whose JSON is no call is given back as text. One difference: text
//! between and after blocks is kept as answer text rather than dropped.

use super::grammar::{self, GrammarTool};
use super::json_scan::decode_call;
use super::parser::{find_from, partial_marker_len, resume_point, Emitter};
use crate::{TextError, Tokenizer};

/// The tag that opens a call.
pub(super) const OPEN: &str = "<tool_call>";
/// The tag that closes it.
pub(super) const CLOSE: &str = "</tool_call>";

/// Keys a call's arguments may come under. "parameters" is what Llama-based Hermes fine-tunes
/// sometimes write.
const ARGUMENT_KEYS: &[&str] = &["arguments", "parameters"];

/// The output grammar when it must be calls from the first token: one block, or blocks
/// separated by whitespace.
pub(super) fn forced_grammar(
    tools: &[GrammarTool],
    parallel: bool,
    tokenizer: &Tokenizer,
) -> Result<String, TextError> {
    let open = grammar::marker(tokenizer, OPEN);
    let start = if parallel {
        "start: call (WS? call)*"
    } else {
        "start: call"
    };
    Ok(format!(
        "{start}\ncall: {open} body\n{}",
        body_rules(tools, tokenizer)?
    ))
}

/// What follows `<tool_call>` once the model wrote it: the rest of that block, then (`parallel`)
/// more blocks.
pub(super) fn triggered_grammar(
    tools: &[GrammarTool],
    parallel: bool,
    tokenizer: &Tokenizer,
) -> Result<String, TextError> {
    let open = grammar::marker(tokenizer, OPEN);
    let start = if parallel {
        format!("start: body (WS? {open} body)*")
    } else {
        "start: body".to_string()
    };
    Ok(format!("{start}\n{}", body_rules(tools, tokenizer)?))
}

/// A block's inside and its closing tag, with the newlines Qwen writes around the JSON allowed
/// but not required (Hermes 2 Pro writes none before `</tool_call>`).
fn body_rules(tools: &[GrammarTool], tokenizer: &Tokenizer) -> Result<String, TextError> {
    let close = grammar::marker(tokenizer, CLOSE);
    let schema = grammar::call_object_schema(tools, "arguments", None)?;
    Ok(format!(
        "body: WS? call_json WS? {close}\ncall_json: {}\n{}\n",
        grammar::json_rule(&schema)?,
        grammar::WS_RULE
    ))
}

/// Streams Hermes output.
#[derive(Clone, Debug, Default)]
pub(super) struct HermesParser {
    /// Inside a block: `pending` is its text after `<tool_call>`.
    in_call: bool,
    pending: String,
    /// Where the search for `</tool_call>` in `pending` goes on.
    search_from: usize,
}

impl HermesParser {
    pub(super) fn push(&mut self, text: &str, out: &mut Emitter) {
        self.pending.push_str(text);
        loop {
            if self.in_call {
                let Some(at) = find_from(&self.pending, CLOSE, self.search_from) else {
                    self.search_from = resume_point(&self.pending, CLOSE);
                    return;
                };
                let body: String = self.pending.drain(..at + CLOSE.len()).collect();
                end_call(&body[..at], true, out);
                self.in_call = false;
            } else {
                match self.pending.find(OPEN) {
                    Some(at) => {
                        out.content(&self.pending[..at]);
                        self.pending.drain(..at + OPEN.len());
                        self.in_call = true;
                        self.search_from = 0;
                    }
                    None => {
                        let ready = self.pending.len() - partial_marker_len(&self.pending, OPEN);
                        out.content(&self.pending[..ready]);
                        self.pending.drain(..ready);
                        return;
                    }
                }
            }
        }
    }

    pub(super) fn finish(&mut self, out: &mut Emitter) {
        let rest = std::mem::take(&mut self.pending);
        if self.in_call {
            end_call(&rest, false, out);
        } else {
            out.content(&rest);
        }
        self.in_call = false;
    }
}

/// A block's text is a call, or else text again (with its tags, as written).
fn end_call(body: &str, closed: bool, out: &mut Emitter) {
    match decode_call(body.trim(), ARGUMENT_KEYS, false) {
        Some(call) => out.call(call),
        None => {
            out.content(OPEN);
            out.content(body);
            if closed {
                out.content(CLOSE);
            }
        }
    }
}
