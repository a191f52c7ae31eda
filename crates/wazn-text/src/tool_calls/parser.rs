//! The streaming side: generated text in, answer text and calls out.
//!
//! Each family's parser (in `hermes.rs`, `llama3.rs`, `mistral.rs`) finds its calls and hands
//! them, and the text around them, to one [`Emitter`], which numbers the calls and tidies the
//! whitespace next to them. Every decision is taken on a prefix of the text that already settles
//! it, so how the text is cut into pieces never changes what comes out.

use super::hermes::HermesParser;
use super::json_scan::DecodedCall;
use super::llama3::Llama3Parser;
use super::mistral::MistralParser;
use super::ToolFormat;

/// A piece of parsed output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolDelta {
    /// Ordinary answer text.
    Content(String),
    /// A call starts; `index` counts the calls of the output from 0.
    Call { index: usize, name: String },
    /// JSON text of call `index`'s arguments; a call's fragments joined are its whole arguments.
    Arguments { index: usize, fragment: String },
}

/// A whole call, as [`ToolDelta::collect`] gathers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    pub name: String,
    /// JSON text of the arguments (an object, as the model wrote it).
    pub arguments: String,
}

impl ToolDelta {
    /// The answer text and the calls that `deltas` make up, for a reply returned whole.
    pub fn collect(deltas: impl IntoIterator<Item = ToolDelta>) -> (String, Vec<ToolCall>) {
        let mut content = String::new();
        let mut calls: Vec<ToolCall> = Vec::new();
        for delta in deltas {
            match delta {
                ToolDelta::Content(text) => content.push_str(&text),
                ToolDelta::Call { name, .. } => calls.push(ToolCall {
                    name,
                    arguments: String::new(),
                }),
                ToolDelta::Arguments { index, fragment } => {
                    if let Some(call) = calls.get_mut(index) {
                        call.arguments.push_str(&fragment);
                    }
                }
            }
        }
        (content, calls)
    }
}

/// One family's parser.
#[derive(Clone, Debug)]
enum Family {
    Hermes(HermesParser),
    Llama3(Llama3Parser),
    Mistral(MistralParser),
}

/// Splits generated text (special tokens' text included, e.g. `<tool_call>`) into answer text
/// and calls. Text that could still become a call is held back until the next piece (or
/// [`ToolCallParser::finish`]) tells; a call is given whole once its JSON is complete (one
/// [`ToolDelta::Call`] then one [`ToolDelta::Arguments`]). A call whose text turns out invalid is
/// given back as answer text, markers included.
#[derive(Clone, Debug)]
pub struct ToolCallParser {
    family: Family,
    out: Emitter,
}

impl ToolCallParser {
    pub(super) fn new(format: ToolFormat) -> ToolCallParser {
        let family = match format {
            ToolFormat::Hermes => Family::Hermes(HermesParser::default()),
            ToolFormat::Llama3Json => Family::Llama3(Llama3Parser::default()),
            ToolFormat::Mistral => Family::Mistral(MistralParser::default()),
        };
        ToolCallParser {
            family,
            out: Emitter::default(),
        }
    }

    /// The deltas that `text` completes, in order.
    pub fn push(&mut self, text: &str) -> Vec<ToolDelta> {
        match &mut self.family {
            Family::Hermes(p) => p.push(text, &mut self.out),
            Family::Llama3(p) => p.push(text, &mut self.out),
            Family::Mistral(p) => p.push(text, &mut self.out),
        }
        std::mem::take(&mut self.out.deltas)
    }

    /// The end of generation: what was held back, with an unfinished or invalid call given as
    /// answer text. The parser is spent afterwards.
    pub fn finish(&mut self) -> Vec<ToolDelta> {
        match &mut self.family {
            Family::Hermes(p) => p.finish(&mut self.out),
            Family::Llama3(p) => p.finish(&mut self.out),
            Family::Mistral(p) => p.finish(&mut self.out),
        }
        self.out.finish();
        std::mem::take(&mut self.out.deltas)
    }
}

/// Collects deltas: numbers the calls, and drops the whitespace right before and after a call
/// (the newlines models put between `</tool_call>` and `<tool_call>`, or after `</think>`), while
/// whitespace between two stretches of text is kept. Trailing whitespace is therefore held until
/// what follows it is known.
#[derive(Clone, Debug, Default)]
pub(super) struct Emitter {
    deltas: Vec<ToolDelta>,
    n_calls: usize,
    /// Text not given yet: whitespace that may turn out to sit next to a call.
    held_space: String,
    /// Nothing but whitespace came since the last call.
    after_call: bool,
}

impl Emitter {
    pub(super) fn content(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.held_space.push_str(text);
        let end = self.held_space.trim_end().len();
        if end == 0 {
            return;
        }
        let mut body = &self.held_space[..end];
        if self.after_call {
            body = body.trim_start();
        }
        self.deltas.push(ToolDelta::Content(body.to_string()));
        self.held_space.drain(..end);
        self.after_call = false;
    }

    pub(super) fn call(&mut self, call: DecodedCall) {
        self.held_space.clear();
        let index = self.n_calls;
        self.n_calls += 1;
        self.deltas.push(ToolDelta::Call {
            index,
            name: call.name,
        });
        self.deltas.push(ToolDelta::Arguments {
            index,
            fragment: call.arguments,
        });
        self.after_call = true;
    }

    /// Gives the held whitespace, unless it follows a call.
    fn finish(&mut self) {
        let rest = std::mem::take(&mut self.held_space);
        if !self.after_call && !rest.is_empty() {
            self.deltas.push(ToolDelta::Content(rest));
        }
    }
}

/// The length of the longest end of `text` that begins `marker` without being all of it: text
/// to hold back, since the next piece may complete the marker.
pub(super) fn partial_marker_len(text: &str, marker: &str) -> usize {
    (1..marker.len())
        .rev()
        .find(|&n| {
            text.len() >= n
                && text.is_char_boundary(text.len() - n)
                && marker.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

/// Where `marker` first occurs in `text` at or after byte `from`, searching only the part not
/// searched before (`from` is where the last search gave up, less a partial marker).
pub(super) fn find_from(text: &str, marker: &str, from: usize) -> Option<usize> {
    let mut start = from.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    text[start..].find(marker).map(|at| start + at)
}

/// Where the next search for `marker` in `text` can start, once it was not found.
pub(super) fn resume_point(text: &str, marker: &str) -> usize {
    text.len().saturating_sub(marker.len())
}
