//! Function calls in generated text: how each model family writes them, the grammars that make a
//! model write them (llguidance's Lark dialect, for the engine's constrained decoding), and the
//! streaming parser that reads them back.
//!
//! The formats and their parsing follow vLLM's tool parsers and llama.cpp's `common/chat.cpp`;
//! one file per family: [`ToolFormat::Hermes`] (`hermes.rs`), [`ToolFormat::Llama3Json`]
//! (`llama3.rs`), [`ToolFormat::Mistral`] (`mistral.rs`).
//!
//! Two grammars per family. Under tool_choice "required" or a named tool the output must be
//! calls from its first token ([`ToolFormat::forced_grammar`]). Under "auto" the model writes
//! freely until it writes the family's trigger token ([`ToolFormat::trigger_token`]), and from
//! there on the rest of the call is constrained ([`ToolFormat::triggered_grammar`]). Neither
//! grammar writes the end-of-generation token: once the last call is complete the grammar
//! accepts, and the engine lets the model end its turn.

mod grammar;
mod hermes;
mod json_scan;
mod llama3;
mod mistral;
mod parser;
mod prompt;

#[cfg(test)]
mod tests;

use crate::{TextError, Tokenizer};
pub use parser::{ToolCall, ToolCallParser, ToolDelta};
pub use prompt::render_with_tools;

/// A family's way of writing function calls in generated text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ToolFormat {
    /// `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`: Hermes 2 Pro / 3, Qwen 2.5
    /// and 3, SmolLM3.
    Hermes,
    /// `{"name": ..., "parameters": {...}}`, maybe after `<|python_tag|>`: Llama 3.1 to 3.3.
    Llama3Json,
    /// `[TOOL_CALLS][{"name": ..., "arguments": {...}}]` or `[TOOL_CALLS]f[ARGS]{...}`: Mistral.
    Mistral,
}

/// A tool the model may call.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolSpec {
    /// Must match `^[A-Za-z0-9_.-]{1,64}$` to go into a grammar.
    pub name: String,
    /// JSON schema of the arguments (an object's); `null` or `{}` means any object.
    pub parameters: serde_json::Value,
}

impl ToolSpec {
    /// The tools of OpenAI's `tools` list, `[{"type": "function", "function": {"name",
    /// "parameters"}}]`: a function without parameters takes any object.
    pub fn from_openai_tools(tools: &serde_json::Value) -> Result<Vec<ToolSpec>, TextError> {
        use serde_json::Value;
        let list = tools
            .as_array()
            .ok_or_else(|| TextError::Tools("tools must be a list".to_string()))?;
        list.iter()
            .enumerate()
            .map(|(index, tool)| {
                let bad = |what: &str| TextError::Tools(format!("tools[{index}]: {what}"));
                if tool.get("type").and_then(Value::as_str) != Some("function") {
                    return Err(bad("only tools of type `function` are supported"));
                }
                let function = tool
                    .get("function")
                    .ok_or_else(|| bad("`function` is missing"))?;
                let name = function
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("`function.name` is missing"))?;
                let parameters = match function.get("parameters") {
                    None | Some(Value::Null) => serde_json::json!({"type": "object"}),
                    Some(p @ Value::Object(_)) => p.clone(),
                    Some(_) => {
                        return Err(bad("`function.parameters` must be a JSON schema object"))
                    }
                };
                Ok(ToolSpec {
                    name: name.to_string(),
                    parameters,
                })
            })
            .collect()
    }
}

/// Which calls a forced output may make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolChoice {
    /// Any of the tools.
    Required,
    /// Only the tool of this name.
    Named(String),
}

impl ToolFormat {
    /// Every format, in the order [`ToolFormat::detect`] prefers them on vocabulary alone.
    pub const ALL: [ToolFormat; 3] = [
        ToolFormat::Mistral,
        ToolFormat::Hermes,
        ToolFormat::Llama3Json,
    ];

    /// The format's name for a command-line or server override: "hermes", "llama3_json",
    /// "mistral" (vLLM's names for the same parsers).
    pub fn name(self) -> &'static str {
        match self {
            ToolFormat::Hermes => "hermes",
            ToolFormat::Llama3Json => "llama3_json",
            ToolFormat::Mistral => "mistral",
        }
    }

    /// The format a [`ToolFormat::name`] names.
    pub fn from_name(name: &str) -> Option<ToolFormat> {
        ToolFormat::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The format a model writes, told by its chat template (which shows the model's own calls)
    /// and else by its vocabulary: `[TOOL_CALLS]` → Mistral; `<tool_call>` → Hermes (Qwen 2.5/3,
    /// Hermes, SmolLM3); `<|python_tag|>`, or a Llama 3 template asking for `"parameters"` →
    /// Llama 3 JSON. The template goes first because fine-tunes keep their base's vocabulary
    /// (Hermes 3 is a Llama 3.1 with `<|python_tag|>`). Hermes when nothing tells.
    pub fn detect(template_source: Option<&str>, tokenizer: &Tokenizer) -> ToolFormat {
        if let Some(source) = template_source {
            if source.contains(mistral::TOOL_CALLS) {
                return ToolFormat::Mistral;
            }
            if source.contains(hermes::OPEN) {
                return ToolFormat::Hermes;
            }
            let llama3_json =
                source.contains("<|start_header_id|>") && source.contains("\"parameters\"");
            if source.contains(llama3::PYTHON_TAG) || llama3_json {
                return ToolFormat::Llama3Json;
            }
        }
        ToolFormat::ALL
            .into_iter()
            .find(|f| f.trigger_token(tokenizer).is_some())
            .unwrap_or(ToolFormat::Hermes)
    }

    /// The text that opens a call: `<tool_call>`, `<|python_tag|>`, `[TOOL_CALLS]`.
    pub fn trigger_text(self) -> &'static str {
        match self {
            ToolFormat::Hermes => hermes::OPEN,
            ToolFormat::Llama3Json => llama3::PYTHON_TAG,
            ToolFormat::Mistral => mistral::TOOL_CALLS,
        }
    }

    /// The token that opens a call ([`ToolFormat::trigger_text`]), when the vocabulary has it as
    /// one token. Llama 3 models mostly start a JSON call with `{` and no tag, which no token
    /// announces; such a call is parsed but not constrained under "auto".
    pub fn trigger_token(self, tokenizer: &Tokenizer) -> Option<u32> {
        tokenizer.single_token(self.trigger_text())
    }

    /// A Lark grammar for output that must be calls from its first token: any of `tools` under
    /// [`ToolChoice::Required`], only the named one under [`ToolChoice::Named`]; one call, or
    /// (`parallel`) one or more. Each call's arguments are held to its tool's `parameters`.
    /// Markers the vocabulary has as one token are written as that token (`<[id]>`).
    pub fn forced_grammar(
        self,
        tools: &[ToolSpec],
        choice: &ToolChoice,
        parallel: bool,
        tokenizer: &Tokenizer,
    ) -> Result<String, TextError> {
        let tools = grammar::select_tools(tools, Some(choice))?;
        match self {
            ToolFormat::Hermes => hermes::forced_grammar(&tools, parallel, tokenizer),
            ToolFormat::Llama3Json => llama3::forced_grammar(&tools, parallel),
            ToolFormat::Mistral => mistral::forced_grammar(&tools, parallel, tokenizer),
        }
    }

    /// The Lark grammar of what follows the trigger token under tool_choice "auto", once the
    /// model wrote it: the rest of the call, then (`parallel`) more calls, each opened by the
    /// trigger again where the format repeats it.
    pub fn triggered_grammar(
        self,
        tools: &[ToolSpec],
        parallel: bool,
        tokenizer: &Tokenizer,
    ) -> Result<String, TextError> {
        let tools = grammar::select_tools(tools, None)?;
        match self {
            ToolFormat::Hermes => hermes::triggered_grammar(&tools, parallel, tokenizer),
            ToolFormat::Llama3Json => llama3::triggered_grammar(&tools, parallel),
            ToolFormat::Mistral => mistral::triggered_grammar(&tools, parallel, tokenizer),
        }
    }

    /// A fresh streaming parser of this format's output.
    pub fn parser(self) -> ToolCallParser {
        ToolCallParser::new(self)
    }
}

/// The tools a forced call may use (all, or the named one), names checked and parameters made
/// object schemas: for grammars of other formats (harmony).
pub(crate) fn chosen_tools(
    tools: &[ToolSpec],
    choice: &ToolChoice,
) -> Result<Vec<ToolSpec>, TextError> {
    Ok(grammar::select_tools(tools, Some(choice))?
        .into_iter()
        .map(|t| ToolSpec {
            name: t.name,
            parameters: t.parameters,
        })
        .collect())
}

/// `%json {…}`: a rule body matching JSON valid under `schema` (an object), written with
/// `options` ([`crate::json_style`]).
pub(crate) fn schema_rule(
    schema: &serde_json::Value,
    options: serde_json::Value,
) -> Result<String, TextError> {
    let schema = crate::json_style::with_options(schema, options)
        .ok_or_else(|| TextError::Tools("a JSON schema must be an object".to_string()))?;
    Ok(format!("%json {}", grammar::to_json(&schema)?))
}

/// `text` as a Lark string literal.
pub(crate) fn lark_literal(text: &str) -> String {
    grammar::literal(text)
}
