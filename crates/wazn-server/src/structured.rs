//! Structured output requests: OpenAI's `response_format`, vLLM's `structured_outputs`
//! (and its older `guided_*` fields) read into a grammar, and the grammar compiled against
//! the model's vocabulary off the async workers.

use std::sync::Arc;

use serde_json::Value;
use wazn_engine::{Constraint, GrammarCompiler, GrammarError, GrammarSpec};

use crate::error::ApiError;
use crate::wire::CommonParams;
use crate::AppState;

/// A grammar a request asks for, and the field that asked for it (named in its errors).
pub struct RequestedGrammar {
    pub param: &'static str,
    pub spec: GrammarSpec,
}

/// The grammar a request's fields ask for, if any. At most one of `response_format`
/// (unless it is `text`), `structured_outputs` and the `guided_*` fields may be given.
pub fn requested_grammar(common: &CommonParams) -> Result<Option<RequestedGrammar>, ApiError> {
    let mut found: Vec<(&str, GrammarSpec)> = Vec::new();
    if let Some(format) = &common.response_format {
        if let Some(spec) = response_format(format)? {
            found.push(("response_format", spec));
        }
    }
    if let Some(outputs) = &common.structured_outputs {
        found.push(("structured_outputs", structured_outputs(outputs)?));
    }
    let guided = [
        ("guided_json", &common.guided_json),
        ("guided_regex", &common.guided_regex),
        ("guided_choice", &common.guided_choice),
        ("guided_grammar", &common.guided_grammar),
    ];
    for (name, value) in guided {
        if let Some(value) = value {
            let key = name.trim_start_matches("guided_");
            found.push((name, one_structured_output(name, key, value)?));
        }
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found
            .pop()
            .map(|(param, spec)| RequestedGrammar { param, spec })),
        _ => {
            let names: Vec<&str> = found.iter().map(|(name, _)| *name).collect();
            Err(ApiError::bad_request(format!(
                "give one output constraint, not several: {}",
                names.join(", ")
            )))
        }
    }
}

/// `response_format`: `text`, `json_object`, or `json_schema` with its `schema`.
fn response_format(format: &Value) -> Result<Option<GrammarSpec>, ApiError> {
    let param = "response_format";
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(GrammarSpec::JsonObject)),
        Some("json_schema") => {
            let schema = format
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        param,
                        "response_format.json_schema.schema is missing; give the JSON schema there",
                    )
                })?;
            let mut schema = schema.clone();
            let strict = format.get("json_schema").and_then(|s| s.get("strict"));
            if strict.and_then(Value::as_bool) == Some(true) {
                close_objects(&mut schema);
            }
            Ok(Some(GrammarSpec::JsonSchema(schema)))
        }
        Some(other) => Err(ApiError::invalid_param(
            param,
            format!(
                "response_format.type is `{other}`; it must be text, json_object or json_schema"
            ),
        )),
        None => Err(ApiError::invalid_param(
            param,
            "response_format must be an object with a `type`",
        )),
    }
}

/// OpenAI's strict mode: an object schema that lists its properties allows no others
/// (`additionalProperties: false`) unless it says otherwise. OpenAI requires strict schemas
/// to say so; here a schema that does not is closed for it, and generation ends where the
/// listed properties do instead of inventing more. An object whose `required` names a
/// property it does not list, or that has `patternProperties`, is left open (closing it would
/// make it unsatisfiable or change its meaning).
fn close_objects(schema: &mut Value) {
    let Value::Object(map) = schema else {
        if let Value::Array(items) = schema {
            items.iter_mut().for_each(close_objects);
        }
        return;
    };
    if let Some(Value::Object(properties)) = map.get("properties") {
        let required_listed = map
            .get("required")
            .and_then(Value::as_array)
            .is_none_or(|names| {
                names
                    .iter()
                    .all(|n| n.as_str().is_some_and(|n| properties.contains_key(n)))
            });
        if required_listed && !map.contains_key("patternProperties") {
            map.entry("additionalProperties")
                .or_insert(Value::Bool(false));
        }
    }
    for (key, value) in map.iter_mut() {
        match key.as_str() {
            // Maps from names to schemas.
            "properties" | "$defs" | "definitions" | "patternProperties" | "dependentSchemas" => {
                if let Value::Object(named) = value {
                    named.values_mut().for_each(close_objects);
                }
            }
            // A schema or a list of schemas.
            "items"
            | "prefixItems"
            | "additionalItems"
            | "anyOf"
            | "oneOf"
            | "allOf"
            | "not"
            | "if"
            | "then"
            | "else"
            | "contains"
            | "additionalProperties" => close_objects(value),
            _ => {}
        }
    }
}

/// vLLM's `structured_outputs`: an object with one of `json`, `regex`, `choice`, `grammar`
/// or `json_object`.
fn structured_outputs(outputs: &Value) -> Result<GrammarSpec, ApiError> {
    let param = "structured_outputs";
    let Some(map) = outputs.as_object() else {
        return Err(ApiError::invalid_param(
            param,
            "structured_outputs must be an object",
        ));
    };
    let given: Vec<(&String, &Value)> = map.iter().filter(|(_, v)| !v.is_null()).collect();
    match given.as_slice() {
        [(key, value)] => one_structured_output(param, key, value),
        [] => Err(ApiError::invalid_param(
            param,
            "structured_outputs is empty; give one of json, regex, choice, grammar or json_object",
        )),
        _ => Err(ApiError::invalid_param(
            param,
            "structured_outputs must give only one of json, regex, choice, grammar or json_object",
        )),
    }
}

fn one_structured_output(param: &str, key: &str, value: &Value) -> Result<GrammarSpec, ApiError> {
    let text = |what: &str| {
        value.as_str().map(str::to_string).ok_or_else(|| {
            ApiError::invalid_param(param, format!("{param}: `{key}` must be a string ({what})"))
        })
    };
    match key {
        // A schema may come as an object or as its JSON text.
        "json" => match value {
            Value::String(s) => serde_json::from_str(s).map(GrammarSpec::JsonSchema).map_err(|e| {
                ApiError::invalid_param(param, format!("{param}: `json` is not valid JSON: {e}"))
            }),
            _ => Ok(GrammarSpec::JsonSchema(value.clone())),
        },
        "json_object" if value.as_bool() == Some(true) => Ok(GrammarSpec::JsonObject),
        "regex" => text("a regular expression").map(GrammarSpec::Regex),
        "grammar" => text("a Lark grammar").map(GrammarSpec::Lark),
        "choice" => {
            let choices: Option<Vec<String>> = value
                .as_array()
                .map(|items| items.iter().map(|c| c.as_str().map(str::to_string)).collect())
                .unwrap_or(None);
            match choices {
                Some(c) if !c.is_empty() => Ok(GrammarSpec::Choice(c)),
                _ => Err(ApiError::invalid_param(
                    param,
                    format!("{param}: `choice` must be a non-empty list of strings"),
                )),
            }
        }
        other => Err(ApiError::invalid_param(
            param,
            format!("{param}: `{other}` is not supported; give json, regex, choice, grammar or json_object"),
        )),
    }
}

/// Compiles `spec` for this model on a blocking thread (a large schema can take a while);
/// `after_token` makes the grammar apply only once the model wrote that token. The
/// vocabulary is prepared on first use and kept.
pub async fn compile(
    state: &Arc<AppState>,
    param: &'static str,
    spec: GrammarSpec,
    after_token: Option<u32>,
) -> Result<Constraint, ApiError> {
    let state = Arc::clone(state);
    let compiled = tokio::task::spawn_blocking(move || {
        let compiler = state
            .grammars
            .get_or_init(|| GrammarCompiler::new(Arc::clone(&state.tokenizer)).map(Arc::new))
            .as_ref()
            .map_err(|e| GrammarError::Unavailable(e.to_string()))?;
        match after_token {
            Some(token) => compiler.compile_after_token(&spec, token),
            None => compiler.compile(&spec),
        }
    })
    .await
    .map_err(|e| ApiError::internal(format!("the grammar compiler stopped: {e}")))?;
    compiled.map_err(|e| match e {
        GrammarError::Invalid(message) => ApiError::invalid_param(param, message),
        GrammarError::Unavailable(_) => ApiError::bad_request(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(extra: Value) -> CommonParams {
        serde_json::from_value(extra).unwrap()
    }

    #[test]
    fn each_field_gives_its_grammar() {
        let cases = [
            (json!({"response_format": {"type": "text"}}), "None"),
            (
                json!({"response_format": {"type": "json_object"}}),
                "JsonObject",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer"}}}}),
                "JsonSchema",
            ),
            (json!({"structured_outputs": {"regex": "a+"}}), "Regex"),
            (
                json!({"structured_outputs": {"choice": ["a", "b"]}}),
                "Choice",
            ),
            (
                json!({"structured_outputs": {"grammar": "start: \"a\""}}),
                "Lark",
            ),
            (
                json!({"structured_outputs": {"json": "{\"type\": \"string\"}"}}),
                "JsonSchema",
            ),
            (json!({"guided_choice": ["x"]}), "Choice"),
        ];
        for (body, want) in cases {
            let got = requested_grammar(&params(body.clone())).unwrap();
            let name = got.map_or("None".to_string(), |g| format!("{:?}", g.spec));
            assert!(name.starts_with(want), "{body}: {name}");
        }
    }

    #[test]
    fn strict_schemas_close_their_objects() {
        let mut schema = json!({
            "type": "object",
            "properties": {
                "a": {"type": "object", "properties": {"b": {"type": "string"}}},
                "c": {"type": "array", "items": {"properties": {"d": {}}, "additionalProperties": true}}
            },
            "$defs": {"e": {"properties": {"f": {}}, "required": ["g"]}}
        });
        close_objects(&mut schema);
        assert_eq!(schema["additionalProperties"], json!(false));
        assert_eq!(
            schema["properties"]["a"]["additionalProperties"],
            json!(false)
        );
        assert_eq!(
            schema["properties"]["c"]["items"]["additionalProperties"],
            json!(true)
        );
        assert!(schema["$defs"]["e"].get("additionalProperties").is_none());
    }

    #[test]
    fn malformed_requests_are_refused() {
        let bad = [
            json!({"response_format": {"type": "yaml"}}),
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}),
            json!({"response_format": "json"}),
            json!({"structured_outputs": {}}),
            json!({"structured_outputs": {"regex": "a", "choice": ["b"]}}),
            json!({"structured_outputs": {"choice": []}}),
            json!({"structured_outputs": {"structural_tag": "x"}}),
            json!({"structured_outputs": {"json": "{not json"}}),
            json!({"response_format": {"type": "json_object"}, "guided_regex": "a"}),
        ];
        for body in bad {
            assert!(requested_grammar(&params(body.clone())).is_err(), "{body}");
        }
    }
}
