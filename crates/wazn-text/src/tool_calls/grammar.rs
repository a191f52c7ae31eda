//! Pieces shared by the families' Lark grammars (llguidance's dialect): checked tools, markers
//! written as tokens, and call objects as inline JSON schemas (`%json { ... }`).
//!
//! Tool names are user input that ends up inside grammar text and JSON schemas, so they are held
//! to `^[A-Za-z0-9_.-]{1,64}$` (OpenAI's rule plus `.`) and always written through a JSON
//! encoder. Schemas are written by hand around the tool's own: the order of a call's keys
//! (`"name"` first) is what the model must write, and it must not hang on whether `serde_json`
//! keeps map order in this build.

use serde_json::Value;

use super::{ToolChoice, ToolSpec};
use crate::{TextError, Tokenizer};

/// Optional whitespace between a call's parts: a few characters, so that a forced model cannot
/// spend its tokens on blank lines.
pub(super) const WS_RULE: &str = r"WS: /[ \t\r\n]{1,4}/";

/// A tool a grammar may call, checked.
#[derive(Clone, Debug)]
pub(super) struct GrammarTool {
    pub name: String,
    /// An object schema.
    pub parameters: Value,
}

/// The tools a grammar allows: all of them, or under [`ToolChoice::Named`] only that one. Every
/// tool's name is checked, and its parameters made an object schema.
pub(super) fn select_tools(
    tools: &[ToolSpec],
    choice: Option<&ToolChoice>,
) -> Result<Vec<GrammarTool>, TextError> {
    if tools.is_empty() {
        return Err(TextError::Tools("no tools to call".to_string()));
    }
    for tool in tools {
        check_name(&tool.name)?;
    }
    let chosen: Vec<&ToolSpec> = match choice {
        Some(ToolChoice::Named(name)) => {
            check_name(name)?;
            let tool = tools.iter().find(|t| &t.name == name).ok_or_else(|| {
                TextError::Tools(format!(
                    "tool_choice names {name:?}, which is not among the tools"
                ))
            })?;
            vec![tool]
        }
        Some(ToolChoice::Required) | None => tools.iter().collect(),
    };
    chosen
        .into_iter()
        .map(|tool| {
            Ok(GrammarTool {
                name: tool.name.clone(),
                parameters: parameters_schema(tool)?,
            })
        })
        .collect()
}

/// Refuses a name that is not 1 to 64 of `A-Z a-z 0-9 _ . -`.
pub(super) fn check_name(name: &str) -> Result<(), TextError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(TextError::BadToolName(name.to_string()))
    }
}

/// A tool's `parameters` as the schema of its arguments: missing or empty means any object, and
/// a schema that does not say its type is an object's (arguments are always an object).
fn parameters_schema(tool: &ToolSpec) -> Result<Value, TextError> {
    match &tool.parameters {
        Value::Null => Ok(serde_json::json!({ "type": "object" })),
        Value::Object(map) if map.is_empty() => Ok(serde_json::json!({ "type": "object" })),
        Value::Object(map) => {
            let mut map = map.clone();
            map.entry("type")
                .or_insert_with(|| Value::String("object".to_string()));
            let mut schema = Value::Object(map);
            crate::json_style::integral_counts(&mut schema);
            Ok(schema)
        }
        _ => Err(TextError::Tools(format!(
            "tool {:?}: parameters must be a JSON schema object",
            tool.name
        ))),
    }
}

/// How a marker is written in a grammar: as its token (`<[id]>`) when the vocabulary has it as
/// one token, so that the model writes that token and not the marker's characters; else as text.
/// Tokens are named by id so that the grammar holds whichever way the engine's token trie marks
/// special tokens.
pub(super) fn marker(tokenizer: &Tokenizer, text: &str) -> String {
    match tokenizer.single_token(text) {
        Some(id) => format!("<[{id}]>"),
        None => literal(text),
    }
}

/// A Lark string literal (Lark strings are JSON strings).
pub(super) fn literal(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

/// `%json` followed by a schema's text: a rule body matching the JSON that `schema` allows,
/// written in wazn's JSON style ([`crate::json_style`]).
pub(super) fn json_rule(schema: &str) -> Result<String, TextError> {
    // The schema is ours, but check it is one JSON object so the grammar text cannot break.
    let parsed = serde_json::from_str::<Value>(schema)
        .map_err(|e| TextError::Tools(format!("internal schema is not JSON: {e}")))?;
    let body = schema
        .strip_prefix('{')
        .filter(|_| parsed.is_object())
        .ok_or_else(|| TextError::Tools("internal schema is not an object".to_string()))?;
    // The options go first, by hand, so the schema's own key order is kept as written.
    let options = to_json(&crate::json_style::tool_call_options())?;
    let separator = if body.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    Ok(format!("%json {{\"x-guidance\":{options}{separator}{body}"))
}

/// The schema of `{"name": <a tool's name>, "<arguments_key>": <its arguments>}`, keys in that
/// order and no others, plus an optional `extra` member (name, schema) that may follow. Several
/// tools make an `anyOf`.
pub(super) fn call_object_schema(
    tools: &[GrammarTool],
    arguments_key: &str,
    extra: Option<(&str, &Value)>,
) -> Result<String, TextError> {
    let extra = match extra {
        Some((key, schema)) => format!(",{}:{}", literal(key), to_json(schema)?),
        None => String::new(),
    };
    let key = literal(arguments_key);
    let objects = tools
        .iter()
        .map(|tool| {
            Ok(format!(
                concat!(
                    r#"{{"type":"object","properties":{{"name":{{"const":{name}}},{key}:{args}{extra}}},"#,
                    r#""required":["name",{key}],"additionalProperties":false}}"#
                ),
                name = literal(&tool.name),
                key = key,
                args = to_json(&tool.parameters)?,
                extra = extra,
            ))
        })
        .collect::<Result<Vec<String>, TextError>>()?;
    Ok(match objects.as_slice() {
        [one] => one.clone(),
        many => format!(r#"{{"anyOf":[{}]}}"#, many.join(",")),
    })
}

/// A schema's JSON text.
pub(super) fn to_json(value: &Value) -> Result<String, TextError> {
    serde_json::to_string(value).map_err(|e| TextError::Tools(format!("schema: {e}")))
}
