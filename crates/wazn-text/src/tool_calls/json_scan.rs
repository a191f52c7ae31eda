//! JSON in generated text: where an object or array that is still streaming in ends, and what a
//! finished call object holds.
//!
//! The streaming parsers must decide when a call's JSON is complete without parsing it again on
//! every piece of text, so [`JsonExtent`] walks each byte once, tracking only brackets and
//! strings. Whether the finished text is valid JSON is left to `serde_json`; the member spans are
//! then read from the text itself, so a call's arguments are passed on exactly as the model
//! wrote them (key order, number spelling), never re-serialized.

use std::collections::HashMap;

use serde_json::value::RawValue;

/// How far a JSON object or array at the start of some text has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Extent {
    /// It ends after this many bytes.
    Complete(usize),
    /// Not closed yet.
    Incomplete,
    /// A bracket closes what it did not open, or the text does not start with `{` or `[`; the
    /// value was known to be broken after this many bytes.
    Invalid(usize),
}

/// Walks an object or array as its text grows, each byte once.
#[derive(Clone, Debug, Default)]
pub(super) struct JsonExtent {
    /// The closing bracket each open one wants, innermost last.
    closers: Vec<u8>,
    in_string: bool,
    escaped: bool,
    /// Bytes of the text already walked.
    walked: usize,
}

impl JsonExtent {
    /// Where the value that `bytes` start with ends. `bytes` must be the same text as in
    /// earlier calls, possibly longer.
    pub(super) fn advance(&mut self, bytes: &[u8]) -> Extent {
        while let Some(&b) = bytes.get(self.walked) {
            let at = self.walked;
            self.walked += 1;
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' => self.closers.push(b'}'),
                b'[' => self.closers.push(b']'),
                b'}' | b']' => {
                    if self.closers.pop() != Some(b) {
                        return Extent::Invalid(self.walked);
                    }
                    if self.closers.is_empty() {
                        return Extent::Complete(self.walked);
                    }
                }
                _ => {}
            }
            if at == 0 && self.closers.is_empty() {
                return Extent::Invalid(self.walked); // not an object or array
            }
        }
        Extent::Incomplete
    }
}

/// A call read out of the model's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct DecodedCall {
    pub name: String,
    /// JSON text.
    pub arguments: String,
}

/// The call a JSON object's text describes: a non-empty string `"name"`, and arguments under the
/// first of `argument_keys` present. Arguments are an object (passed on as written), `null`, or a
/// string: a string holding an object's JSON is that object (some models serialize their
/// arguments), any other string is passed on as a JSON string, as vLLM does. Absent arguments
/// are `{}` unless `require_arguments`. `None` when the text is not such an object.
pub(super) fn decode_call(
    text: &str,
    argument_keys: &[&str],
    require_arguments: bool,
) -> Option<DecodedCall> {
    // Members are kept as written (`RawValue`): a number past f64's range (`359e918`) is valid
    // JSON, which a grammar may let the model write, and must not make the call unreadable.
    let object: HashMap<String, Box<RawValue>> = serde_json::from_str(text).ok()?;
    let name: String = serde_json::from_str(object.get("name")?.get()).ok()?;
    if name.is_empty() {
        return None;
    }
    let key = argument_keys.iter().find(|k| object.contains_key(**k));
    let raw = key.and_then(|k| object.get(*k)).map(|v| v.get().trim());
    let arguments = match raw {
        None if require_arguments => return None,
        None | Some("null") => "{}".to_string(),
        Some(value) if value.starts_with('{') => value.to_string(),
        Some(value) if value.starts_with('"') => {
            let serialized: String = serde_json::from_str(value).ok()?;
            match serde_json::from_str::<Box<RawValue>>(&serialized) {
                Ok(inner) if inner.get().trim_start().starts_with('{') => {
                    serialized.trim().to_string()
                }
                _ => value.to_string(),
            }
        }
        Some(_) => return None,
    };
    Some(DecodedCall { name, arguments })
}

/// The texts of the elements of a valid JSON array's text.
pub(super) fn array_items(text: &str) -> Option<Vec<&str>> {
    let bytes = text.as_bytes();
    let mut at = skip_space(bytes, 0);
    if bytes.get(at) != Some(&b'[') {
        return None;
    }
    at = skip_space(bytes, at + 1);
    let mut items = Vec::new();
    while !matches!(bytes.get(at), None | Some(b']')) {
        let end = value_end(bytes, at)?;
        items.push(text.get(at..end)?);
        at = skip_space(bytes, end);
        if bytes.get(at) == Some(&b',') {
            at = skip_space(bytes, at + 1);
        }
    }
    Some(items)
}

/// Where the value starting at `start` of valid JSON ends.
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    match bytes.get(start)? {
        b'"' => {
            let mut escaped = false;
            for (i, &b) in bytes.iter().enumerate().skip(start + 1) {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    return Some(i + 1);
                }
            }
            None
        }
        b'{' | b'[' => match JsonExtent::default().advance(bytes.get(start..)?) {
            Extent::Complete(len) => Some(start + len),
            _ => None,
        },
        _ => {
            let len = bytes
                .get(start..)?
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(bytes.len() - start);
            Some(start + len)
        }
    }
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}
