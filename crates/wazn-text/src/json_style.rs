//! How constrained JSON is written, for every grammar that embeds a JSON schema: the options
//! of llguidance's JSON schema compiler, given under a schema's `x-guidance` key. Neither
//! style lets a model write runs of whitespace or newlines, which a small model would
//! otherwise fill its budget with; both read `oneOf` as `anyOf`, as vLLM configures
//! llguidance.

use serde_json::{json, Value};

/// Structured output (`response_format`, `structured_outputs`): separators of one space, as
/// Python's `json.dumps` writes them (`{"a": 1, "b": [2, 3]}`), and nothing else between
/// tokens. Every separator and every fixed key is then forced, so the engine writes them
/// without sampling.
pub fn structured_output_options() -> Value {
    json!({
        "whitespace_flexible": false,
        "item_separator": ", ",
        "key_separator": ": ",
        "coerce_one_of": true,
    })
}

/// Function-call arguments: at most one space between tokens, since the families write
/// calls differently (`{"a": 1}` in Qwen's and Llama's templates, `{"a":1}` in Mistral's).
pub fn tool_call_options() -> Value {
    json!({
        "whitespace_pattern": "\\x20",
        "item_separator": ",",
        "key_separator": ":",
        "coerce_one_of": true,
    })
}

/// `schema` (an object) with `options` under `x-guidance`, unless it has its own, and its
/// counts made integers ([`integral_counts`]).
pub fn with_options(schema: &Value, options: Value) -> Option<Value> {
    let mut map = schema.as_object()?.clone();
    map.entry("x-guidance").or_insert(options);
    let mut schema = Value::Object(map);
    integral_counts(&mut schema);
    Some(schema)
}

/// Keywords whose value is a count of characters, items or properties.
const COUNT_KEYWORDS: [&str; 8] = [
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minContains",
    "maxContains",
];

/// Writes counts given as whole floats (`"maxLength": 2.0`, which JSON Schema allows) as
/// integers, everywhere in `schema`: llguidance's compiler takes integers only. Also drops
/// `"uniqueItems": false`, which asks for nothing and which the compiler does not know.
pub fn integral_counts(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.get("uniqueItems") == Some(&Value::Bool(false)) {
                map.remove("uniqueItems");
            }
            for (key, value) in map.iter_mut() {
                let whole = value
                    .as_f64()
                    .filter(|x| x.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(x));
                match whole {
                    Some(x) if COUNT_KEYWORDS.contains(&key.as_str()) && !value.is_u64() => {
                        *value = Value::from(x as u64);
                    }
                    _ => integral_counts(value),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_counts),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_float_counts_become_integers() {
        let mut schema = json!({
            "type": "object", "maxProperties": 3.0,
            "properties": {"a": {"type": "string", "minLength": 2.0, "maxLength": 2.5},
                           "maxLength": {"type": "number", "minimum": 2.0}},
            "anyOf": [{"minItems": 1.0, "uniqueItems": false}, {"uniqueItems": true}]
        });
        integral_counts(&mut schema);
        assert_eq!(schema["maxProperties"], json!(3));
        assert_eq!(schema["properties"]["a"]["minLength"], json!(2));
        assert_eq!(schema["properties"]["a"]["maxLength"], json!(2.5));
        assert_eq!(schema["properties"]["maxLength"]["minimum"], json!(2.0));
        assert_eq!(schema["anyOf"][0], json!({"minItems": 1}));
        assert_eq!(schema["anyOf"][1], json!({"uniqueItems": true}));
    }
}
