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

/// `schema` (an object) with `options` under `x-guidance`, unless it has its own.
pub fn with_options(schema: &Value, options: Value) -> Option<Value> {
    let mut map = schema.as_object()?.clone();
    map.entry("x-guidance").or_insert(options);
    Some(Value::Object(map))
}
