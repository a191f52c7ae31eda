//! Grammars of a harmony reply (gpt-oss), for constrained decoding: reasoning on the
//! `analysis` channel stays free, and what follows is held to the request — a `final` answer
//! that is JSON of a schema, or a call to one of the function tools with arguments of its
//! schema. Generation starts after the prompt's `<|start|>assistant`; the model ends the reply
//! with `<|return|>` or `<|call|>`, which the grammars leave to it (they are end tokens).
//!
//! The reply as harmony writes it: `<|channel|>analysis<|message|>…<|end|>`, then
//! `<|start|>assistant` and either `<|channel|>final<|message|>…` or a call,
//! ` to=functions.NAME<|channel|>commentary <|constrain|>json<|message|>{…}`.

use serde_json::Value;

use crate::o200k_ids::{CHANNEL, CONSTRAIN, END, MESSAGE, START};
use crate::tool_calls::{self, ToolChoice, ToolSpec};
use crate::TextError;

/// Reasoning before the answer: any number of `analysis` messages, each closed and followed by
/// the next `<|start|>assistant`.
fn analysis_rules() -> String {
    format!(
        "analysis: <[{CHANNEL}]> \"analysis\" <[{MESSAGE}]> REASONING <[{END}]> <[{START}]> \"assistant\"\n\
         REASONING: /(?s:.*)/\n"
    )
}

/// A reply whose answer (`final` channel) is JSON valid under `schema`.
pub fn final_json_grammar(schema: &Value) -> Result<String, TextError> {
    let schema = tool_calls::schema_rule(schema, crate::json_style::structured_output_options())?;
    Ok(format!(
        "start: analysis* answer\nanswer: <[{CHANNEL}]> \"final\" <[{MESSAGE}]> {schema}\n{}",
        analysis_rules()
    ))
}

/// A reply that calls one of `tools` (under [`ToolChoice::Named`], that one), its arguments
/// valid under the tool's `parameters`. Harmony makes one call a turn: the reply ends there.
/// The recipient may come in the header before the channel (as harmony renders calls) or
/// after it (as gpt-oss often writes them), and `<|constrain|>` may be left out (as the
/// Hugging Face template renders calls).
pub fn forced_call_grammar(tools: &[ToolSpec], choice: &ToolChoice) -> Result<String, TextError> {
    let chosen = tool_calls::chosen_tools(tools, choice)?;
    let mut rules = String::new();
    let mut alternatives = Vec::new();
    for (i, tool) in chosen.iter().enumerate() {
        let arguments =
            tool_calls::schema_rule(&tool.parameters, crate::json_style::tool_call_options())?;
        let name = tool_calls::lark_literal(&tool.name);
        alternatives.push(format!("call{i}"));
        rules.push_str(&format!(
            "call{i}: (\" to=functions.\" {name} <[{CHANNEL}]> \"commentary\" \
             | <[{CHANNEL}]> \"commentary to=functions.\" {name}) \
             \" \" <[{CONSTRAIN}]>? \"json\" <[{MESSAGE}]> {arguments}\n",
        ));
    }
    Ok(format!(
        "start: analysis* ({})\n{rules}{}",
        alternatives.join(" | "),
        analysis_rules()
    ))
}
