//! How constrained JSON is written, for every grammar that embeds a JSON schema (structured
//! output and tool-call arguments): the options of llguidance's JSON schema compiler, given
//! under a schema's `x-guidance` key.

use serde_json::{json, Value};

/// At most one space between tokens: both `{"a": 1, "b": 2}` (Python's `json.dumps`, most
/// chat templates' calls) and `{"a":1,"b":2}` (Mistral's calls) are allowed, but not runs
/// of whitespace or newlines, which a small model would otherwise fill its budget with;
/// `oneOf` is read as `anyOf`, as vLLM configures llguidance.
pub fn compile_options() -> Value {
    json!({
        "whitespace_pattern": "\\x20",
        "item_separator": ",",
        "key_separator": ":",
        "coerce_one_of": true,
    })
}

/// `schema` (an object) with [`compile_options`] under `x-guidance`, unless it has its own.
pub fn with_compile_options(schema: &Value) -> Option<Value> {
    let mut map = schema.as_object()?.clone();
    map.entry("x-guidance").or_insert_with(compile_options);
    Some(Value::Object(map))
}
