//! Llama 3.1 / 3.2 / 3.3 JSON calls: `{"name": "f", "parameters": {...}}` as the whole answer,
//! possibly after `<|python_tag|>`, several separated by `;` (as vLLM's `llama3_json` parser
//! accepts them). Meta's templates ask for "parameters"; "arguments" is taken too, and so is
//! `"type": "function"` in front, which Llama 3.2 sometimes writes.
//!
//! A call is recognised where vLLM's streaming parser and llama.cpp recognise it: at the start
//! of the output (after whitespace), or right after `<|python_tag|>` anywhere. JSON that starts
//! the output but is not a call (an answer that is JSON) is answer text. Text after the calls is
//! answer text too (vLLM drops it).

use super::grammar::{self, GrammarTool};
use super::json_scan::{decode_call, Extent, JsonExtent};
use super::parser::{partial_marker_len, Emitter};
use crate::TextError;

/// The token Llama 3 writes before a call (always for its built-in tools, sometimes for JSON).
pub(super) const PYTHON_TAG: &str = "<|python_tag|>";

const ARGUMENT_KEYS: &[&str] = &["parameters", "arguments"];

/// What may separate two calls: `;` (vLLM's `"; "`, also bare or before a newline).
const SEPARATOR_RULE: &str = r"SEP: /;[ \n]?/";

/// The output grammar when it must be calls from the first token: the JSON form, without
/// `<|python_tag|>` (as llama.cpp writes it for Llama 3.x).
pub(super) fn forced_grammar(tools: &[GrammarTool], parallel: bool) -> Result<String, TextError> {
    calls_grammar(tools, parallel)
}

/// What follows `<|python_tag|>` once the model wrote it: the call(s) in JSON.
pub(super) fn triggered_grammar(
    tools: &[GrammarTool],
    parallel: bool,
) -> Result<String, TextError> {
    calls_grammar(tools, parallel)
}

fn calls_grammar(tools: &[GrammarTool], parallel: bool) -> Result<String, TextError> {
    let start = if parallel {
        format!("start: call (SEP call)*\n{SEPARATOR_RULE}")
    } else {
        "start: call".to_string()
    };
    let schema = grammar::call_object_schema(tools, "parameters", None)?;
    Ok(format!("{start}\ncall: {}\n", grammar::json_rule(&schema)?))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace yet: a call may start here.
    #[default]
    Start,
    /// Answer text; only `<|python_tag|>` starts a call now.
    Content,
    /// Reading calls; `pending` starts where the next call (or its separator) would.
    Calls,
}

/// Streams Llama 3 JSON output.
#[derive(Clone, Debug, Default)]
pub(super) struct Llama3Parser {
    state: State,
    pending: String,
    /// Calls given in this run of calls.
    n_calls: usize,
    /// The JSON being read: where it starts in `pending`, and how far it was walked.
    json: Option<(usize, JsonExtent)>,
}

impl Llama3Parser {
    pub(super) fn push(&mut self, text: &str, out: &mut Emitter) {
        self.pending.push_str(text);
        self.run(out, false);
    }

    pub(super) fn finish(&mut self, out: &mut Emitter) {
        self.run(out, true);
        out.content(&std::mem::take(&mut self.pending));
    }

    /// Takes every decision the text so far settles; `at_end`: no more text will come.
    fn run(&mut self, out: &mut Emitter, at_end: bool) {
        loop {
            match self.state {
                State::Start => {
                    let rest = self.pending.trim_start();
                    if rest.starts_with('{') || rest.starts_with(PYTHON_TAG) {
                        self.enter_calls();
                    } else if PYTHON_TAG.starts_with(rest) && !at_end {
                        return; // whitespace or a partial tag: wait
                    } else {
                        self.state = State::Content;
                    }
                }
                State::Content => match self.pending.find(PYTHON_TAG) {
                    Some(at) => {
                        out.content(&self.pending[..at]);
                        self.pending.drain(..at);
                        self.enter_calls();
                    }
                    None => {
                        let keep = if at_end {
                            0
                        } else {
                            partial_marker_len(&self.pending, PYTHON_TAG)
                        };
                        let ready = self.pending.len() - keep;
                        out.content(&self.pending[..ready]);
                        self.pending.drain(..ready);
                        return;
                    }
                },
                State::Calls => {
                    if !self.step_calls(out, at_end) {
                        return;
                    }
                }
            }
        }
    }

    fn enter_calls(&mut self) {
        self.state = State::Calls;
        self.n_calls = 0;
        self.json = None;
    }

    /// One step of reading calls; false when it must wait for more text.
    fn step_calls(&mut self, out: &mut Emitter, at_end: bool) -> bool {
        let Some(start) = self.call_start() else {
            if !at_end {
                return false;
            }
            let only_separators = self
                .pending
                .trim_matches(|c: char| c == ';' || c.is_whitespace())
                .is_empty();
            // What is left is text, but a separator with no call after it goes. It is given
            // here: read again as text, a `<|python_tag|>` in it would start calls again.
            if !(self.n_calls > 0 && only_separators) {
                out.content(&self.pending);
            }
            self.pending.clear();
            self.state = State::Content;
            return true;
        };
        if self.pending.as_bytes().get(start) != Some(&b'{') {
            return self.give_up(start, out);
        }
        let (json_start, extent) = self
            .json
            .get_or_insert_with(|| (start, JsonExtent::default()));
        let walked = extent.advance(self.pending.as_bytes().get(*json_start..).unwrap_or(&[]));
        match walked {
            Extent::Incomplete if at_end => self.give_up(start, out),
            Extent::Incomplete => false,
            Extent::Invalid(_) => self.give_up(start, out),
            Extent::Complete(len) => {
                let end = start + len;
                match decode_call(&self.pending[start..end], ARGUMENT_KEYS, true) {
                    Some(call) => {
                        out.call(call);
                        self.pending.drain(..end);
                        self.n_calls += 1;
                        self.json = None;
                        true
                    }
                    None => self.give_up(start, out),
                }
            }
        }
    }

    /// Where the next call's JSON starts in `pending`, past whitespace, a `;` between calls and
    /// `<|python_tag|>`; `None` while the text so far does not tell.
    fn call_start(&self) -> Option<usize> {
        let text = self.pending.as_str();
        let mut at = skip_space(text, 0);
        if self.n_calls > 0 && text[at..].starts_with(';') {
            at = skip_space(text, at + 1);
        }
        if text[at..].starts_with(PYTHON_TAG) {
            at = skip_space(text, at + PYTHON_TAG.len());
        } else if !text[at..].is_empty() && PYTHON_TAG.starts_with(&text[at..]) {
            return None;
        }
        (at < text.len()).then_some(at)
    }

    /// What was taken for a call starting at `start` is not one: it is answer text, read again
    /// as such. A `<|python_tag|>` before it is given as text first, or it would be taken for a
    /// call again.
    fn give_up(&mut self, start: usize, out: &mut Emitter) -> bool {
        if let Some(at) = self.pending[..start].find(PYTHON_TAG) {
            let end = at + PYTHON_TAG.len();
            out.content(&self.pending[..end]);
            self.pending.drain(..end);
        }
        self.state = State::Content;
        self.json = None;
        true
    }
}

fn skip_space(text: &str, at: usize) -> usize {
    at + text[at..].len() - text[at..].trim_start().len()
}
