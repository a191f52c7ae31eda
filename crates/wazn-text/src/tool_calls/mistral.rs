//! Mistral calls, after the `[TOOL_CALLS]` token, in the two forms Mistral's tokenizers have
//! used:
//!
//! - v3 (Mistral 7B v0.3, Nemo, Small 3.0/3.1): `[TOOL_CALLS][{"name": "f", "arguments": {...},
//!   "id": "abc123XYZ"}, ...]`, one JSON list of calls (the 9-character id is optional);
//! - v11 and later (Devstral, Magistral, Ministral 3, Mistral Small 3.2): `[TOOL_CALLS]f[ARGS]{...}`
//!   per call, Small 3.2 adding `[CALL_ID]abc123XYZ` before `[ARGS]`.
//!
//! The parser takes both forms whatever the vocabulary (and `f{...}` without `[ARGS]`, which is
//! how the text reads when `[ARGS]` was skipped as a special token, as in vLLM's tests); the
//! grammars write the form whose tokens the vocabulary has. Text before `[TOOL_CALLS]` and after
//! a call is answer text.

use super::grammar::{self, GrammarTool};
use super::json_scan::{array_items, decode_call, DecodedCall, Extent, JsonExtent};
use super::parser::{partial_marker_len, Emitter};
use crate::{TextError, Tokenizer};

/// The token that opens calls.
pub(super) const TOOL_CALLS: &str = "[TOOL_CALLS]";
/// The token between a call's name and its arguments (v11+).
const ARGS: &str = "[ARGS]";
/// The token before a call's id (Mistral Small 3.2).
const CALL_ID: &str = "[CALL_ID]";

/// A name longer than this without its arguments starting is no name.
const MAX_NAME_LEN: usize = 256;
/// Likewise a call id (Mistral's are 9 characters).
const MAX_ID_LEN: usize = 64;

/// The output grammar when it must be calls from the first token.
pub(super) fn forced_grammar(
    tools: &[GrammarTool],
    parallel: bool,
    tokenizer: &Tokenizer,
) -> Result<String, TextError> {
    let tool_calls = grammar::marker(tokenizer, TOOL_CALLS);
    if tokenizer.single_token(ARGS).is_some() {
        let start = if parallel { "call+" } else { "call" };
        Ok(format!(
            "start: {start}\ncall: {tool_calls} fn\n{}",
            named_rules(tools, tokenizer)?
        ))
    } else {
        Ok(format!(
            "start: {tool_calls} list\n{}",
            list_rules(tools, parallel)?
        ))
    }
}

/// What follows `[TOOL_CALLS]` once the model wrote it.
pub(super) fn triggered_grammar(
    tools: &[GrammarTool],
    parallel: bool,
    tokenizer: &Tokenizer,
) -> Result<String, TextError> {
    if tokenizer.single_token(ARGS).is_some() {
        let tool_calls = grammar::marker(tokenizer, TOOL_CALLS);
        let start = if parallel {
            format!("start: fn ({tool_calls} fn)*")
        } else {
            "start: fn".to_string()
        };
        Ok(format!("{start}\n{}", named_rules(tools, tokenizer)?))
    } else {
        Ok(format!("start: list\n{}", list_rules(tools, parallel)?))
    }
}

/// `f[ARGS]{...}`: one alternative per tool, so that each name is followed by its own
/// arguments' schema; `[CALL_ID]` and an id may come between when the vocabulary has that token.
fn named_rules(tools: &[GrammarTool], tokenizer: &Tokenizer) -> Result<String, TextError> {
    let args = grammar::marker(tokenizer, ARGS);
    let call_id = tokenizer
        .single_token(CALL_ID)
        .map(|id| format!("<[{id}]>"));
    let id_part = if call_id.is_some() { " call_id?" } else { "" };
    let alternatives: Vec<String> = (0..tools.len()).map(|i| format!("tool_{i}")).collect();
    let mut rules = format!("fn: {}\n", alternatives.join(" | "));
    for (i, tool) in tools.iter().enumerate() {
        let schema = grammar::to_json(&tool.parameters)?;
        rules.push_str(&format!(
            "tool_{i}: {}{id_part} {args} {}\n",
            grammar::literal(&tool.name),
            grammar::json_rule(&schema)?
        ));
    }
    if let Some(token) = call_id {
        rules.push_str(&format!(
            "call_id: {token} CALL_ID_TEXT\nCALL_ID_TEXT: /[A-Za-z0-9]{{9}}/\n"
        ));
    }
    Ok(rules)
}

/// `[{"name": ..., "arguments": ..., "id": ...}, ...]`: one call, or (`parallel`) several.
fn list_rules(tools: &[GrammarTool], parallel: bool) -> Result<String, TextError> {
    let id_schema = serde_json::json!({ "type": "string", "pattern": "^[A-Za-z0-9]{9}$" });
    let schema = grammar::call_object_schema(tools, "arguments", Some(("id", &id_schema)))?;
    let calls = if parallel {
        "call_json (SEP call_json)*"
    } else {
        "call_json"
    };
    Ok(format!(
        "list: \" \"? \"[\" {calls} \"]\"\ncall_json: {}\nSEP: /, ?/\n",
        grammar::json_rule(&schema)?
    ))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    #[default]
    Content,
    /// `pending` starts with `[TOOL_CALLS]`.
    Call,
}

/// How far a `f[CALL_ID]id[ARGS]` head has come.
enum Head {
    Wait,
    Broken,
    /// The name, and where the arguments' JSON starts (relative to the head).
    Ready(String, usize),
}

/// Streams Mistral output.
#[derive(Clone, Debug, Default)]
pub(super) struct MistralParser {
    state: State,
    pending: String,
    /// The JSON being read: where it starts in `pending`, and how far it was walked.
    json: Option<(usize, JsonExtent)>,
}

impl MistralParser {
    pub(super) fn push(&mut self, text: &str, out: &mut Emitter) {
        self.pending.push_str(text);
        self.run(out, false);
    }

    pub(super) fn finish(&mut self, out: &mut Emitter) {
        self.run(out, true);
        out.content(&std::mem::take(&mut self.pending));
    }

    fn run(&mut self, out: &mut Emitter, at_end: bool) {
        loop {
            match self.state {
                State::Content => match self.pending.find(TOOL_CALLS) {
                    Some(at) => {
                        out.content(&self.pending[..at]);
                        self.pending.drain(..at);
                        self.state = State::Call;
                        self.json = None;
                    }
                    None => {
                        let keep = if at_end {
                            0
                        } else {
                            partial_marker_len(&self.pending, TOOL_CALLS)
                        };
                        let ready = self.pending.len() - keep;
                        out.content(&self.pending[..ready]);
                        self.pending.drain(..ready);
                        return;
                    }
                },
                State::Call => {
                    if !self.step_call(out, at_end) {
                        return;
                    }
                }
            }
        }
    }

    /// One step of reading what follows `[TOOL_CALLS]`; false when it must wait for more text.
    fn step_call(&mut self, out: &mut Emitter, at_end: bool) -> bool {
        let lead = skip_space(&self.pending, TOOL_CALLS.len());
        let (json_at, name) = match self.pending.as_bytes().get(lead) {
            None => return at_end && self.give_up(out),
            Some(b'[' | b'{') => (lead, None),
            Some(_) => match read_head(&self.pending[lead..]) {
                Head::Wait => return at_end && self.give_up(out),
                Head::Broken => return self.give_up(out),
                Head::Ready(name, offset) => (lead + offset, Some(name)),
            },
        };
        if self.pending.len() == json_at {
            return at_end && self.give_up(out);
        }
        let (start, extent) = self
            .json
            .get_or_insert_with(|| (json_at, JsonExtent::default()));
        let walked = extent.advance(self.pending.as_bytes().get(*start..).unwrap_or(&[]));
        let end = match walked {
            Extent::Incomplete => return at_end && self.give_up(out),
            Extent::Invalid(_) => return self.give_up(out),
            Extent::Complete(len) => json_at + len,
        };
        let calls = match name {
            Some(name) => named_call(name, &self.pending[json_at..end]),
            None => listed_calls(&self.pending[json_at..end]),
        };
        match calls {
            Some(calls) => {
                for call in calls {
                    out.call(call);
                }
                self.pending.drain(..end);
                self.state = State::Content;
                self.json = None;
                true
            }
            None => self.give_up(out),
        }
    }

    /// What followed `[TOOL_CALLS]` is no call: the marker is given as text, and the rest is
    /// read again as answer text (it may hold the next `[TOOL_CALLS]`).
    fn give_up(&mut self, out: &mut Emitter) -> bool {
        out.content(TOOL_CALLS);
        self.pending.drain(..TOOL_CALLS.len());
        self.state = State::Content;
        self.json = None;
        true
    }
}

/// Reads `f`, then an optional `[CALL_ID]id`, then `[ARGS]` (or nothing) before `{`.
fn read_head(text: &str) -> Head {
    let name_end = text.find(['[', '{']);
    let name = text[..name_end.unwrap_or(text.len())].trim_end();
    if name.len() > MAX_NAME_LEN || name.contains(char::is_whitespace) {
        return Head::Broken;
    }
    let Some(name_end) = name_end else {
        return Head::Wait;
    };
    if name.is_empty() {
        return Head::Broken;
    }
    let mut at = name_end;
    if text[at..].starts_with(CALL_ID) {
        let id_start = at + CALL_ID.len();
        match text[id_start..].find(['[', '{']) {
            Some(len) if len <= MAX_ID_LEN => at = id_start + len,
            None if text.len() - id_start <= MAX_ID_LEN => return Head::Wait,
            _ => return Head::Broken,
        }
    }
    let rest = &text[at..];
    if rest.starts_with(ARGS) {
        at += ARGS.len();
    } else if !rest.starts_with('{') {
        let cut_short = ARGS.starts_with(rest) || CALL_ID.starts_with(rest);
        return if cut_short { Head::Wait } else { Head::Broken };
    }
    at = skip_space(text, at);
    match text.as_bytes().get(at) {
        None => Head::Wait,
        Some(b'{') => Head::Ready(name.to_string(), at),
        Some(_) => Head::Broken,
    }
}

/// The call `f[ARGS]{...}` makes, when the arguments are a JSON object.
fn named_call(name: String, arguments: &str) -> Option<Vec<DecodedCall>> {
    match serde_json::from_str::<serde_json::Value>(arguments) {
        Ok(serde_json::Value::Object(_)) => Some(vec![DecodedCall {
            name,
            arguments: arguments.to_string(),
        }]),
        _ => None,
    }
}

/// The calls a v3 list (or a lone call object) makes, when every element is one.
fn listed_calls(json: &str) -> Option<Vec<DecodedCall>> {
    if json.starts_with('{') {
        return decode_call(json, &["arguments"], false).map(|call| vec![call]);
    }
    serde_json::from_str::<serde_json::Value>(json).ok()?;
    let items = array_items(json)?;
    if items.is_empty() {
        return None;
    }
    items
        .into_iter()
        .map(|item| decode_call(item, &["arguments"], false))
        .collect()
}

fn skip_space(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    at + text[at..].len() - text[at..].trim_start().len()
}
