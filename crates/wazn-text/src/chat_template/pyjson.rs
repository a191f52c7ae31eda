//! `tojson` as transformers defines it for chat templates: Python's
//! `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`, with
//! those four as keyword arguments. Jinja's own `tojson` escapes `<`, `>`, `&` and `'` and
//! writes no spaces after `,` and `:`, which would change the prompt.

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};

/// The longest indent unit `tojson` takes: far beyond any template's (2 or 4), and a bound
/// on what a hostile one can make it allocate per line.
const MAX_INDENT: usize = 64;

struct Style {
    ensure_ascii: bool,
    /// Some(unit) puts every item on its own line, indented by `unit` per level.
    indent: Option<String>,
    item_separator: String,
    key_separator: String,
    sort_keys: bool,
}

pub(crate) fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let indent_arg: Option<Value> = kwargs.get("indent")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;

    let indent = match indent_arg {
        None => None,
        Some(v) if v.is_none() => None,
        // Python repeats the space `indent` times; a negative count gives no spaces.
        Some(v) if v.is_integer() => match v.as_i64().map(|n| n.max(0)) {
            Some(n) if n <= MAX_INDENT as i64 => Some(" ".repeat(n as usize)),
            _ => {
                return Err(bad(&format!(
                    "tojson: indent {v} is more than {MAX_INDENT}"
                )))
            }
        },
        Some(v) => match v.as_str() {
            Some(s) if s.len() <= MAX_INDENT => Some(s.to_string()),
            Some(s) => {
                let n = s.len();
                return Err(bad(&format!(
                    "tojson: an indent of {n} bytes is more than {MAX_INDENT}"
                )));
            }
            None => return Err(bad("tojson: indent must be an integer or a string")),
        },
    };
    let (item_separator, key_separator) = match separators.as_deref() {
        Some([item, key]) => (item.clone(), key.clone()),
        Some(_) => return Err(bad("tojson: separators must be two strings")),
        // Python drops the space after ',' when indenting, as lines end there.
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let style = Style {
        ensure_ascii: ensure_ascii.unwrap_or(false),
        indent,
        item_separator,
        key_separator,
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    write_value(&mut out, value, &style, 0)?;
    Ok(Value::from_safe_string(out))
}

fn bad(message: &str) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.to_string())
}

fn write_value(out: &mut String, value: &Value, style: &Style, depth: usize) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number if value.is_integer() => out.push_str(&value.to_string()),
        ValueKind::Number => {
            let x = f64::try_from(value.clone())?;
            out.push_str(&python_float_repr(x));
        }
        ValueKind::String => write_string(out, value.as_str().unwrap_or_default(), style),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_container(out, ('[', ']'), items.len(), style, depth, |out, i| {
                write_value(out, &items[i], style, depth + 1)
            })?;
        }
        ValueKind::Map => {
            let mut entries = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                entries.push((key_string(&key)?, item));
            }
            if style.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            write_container(out, ('{', '}'), entries.len(), style, depth, |out, i| {
                write_string(out, &entries[i].0, style);
                out.push_str(&style.key_separator);
                write_value(out, &entries[i].1, style, depth + 1)
            })?;
        }
        kind => {
            return Err(bad(&format!(
                "tojson: a value of type {kind} is not JSON serializable"
            )))
        }
    }
    Ok(())
}

fn write_container(
    out: &mut String,
    (open, close): (char, char),
    len: usize,
    style: &Style,
    depth: usize,
    mut write_item: impl FnMut(&mut String, usize) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if len > 0 {
        let newline = |out: &mut String, depth: usize| {
            if let Some(unit) = &style.indent {
                out.push('\n');
                out.push_str(&unit.repeat(depth));
            }
        };
        for i in 0..len {
            if i > 0 {
                out.push_str(&style.item_separator);
            }
            newline(out, depth + 1);
            write_item(out, i)?;
        }
        newline(out, depth);
    }
    out.push(close);
    Ok(())
}

/// JSON object keys are strings; Python turns number, bool and None keys into their JSON text.
fn key_string(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_string()),
        ValueKind::None => Ok("null".to_string()),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.to_string()),
        ValueKind::Number if key.is_integer() => Ok(key.to_string()),
        ValueKind::Number => Ok(python_float_repr(f64::try_from(key.clone())?)),
        kind => Err(bad(&format!("tojson: keys must be str, not {kind}"))),
    }
}

/// A JSON string as Python writes it: `"` `\` and control characters escaped (named escapes
/// where JSON has them), and with `ensure_ascii` everything outside ASCII as `\uXXXX`.
fn write_string(out: &mut String, s: &str, style: &Style) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (style.ensure_ascii && (c as u32) >= 0x7f) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest digits that read back to the same number, positional
/// for decimal exponents -4..=15 (always with a fraction, `1.0`), scientific otherwise with a
/// signed exponent of at least two digits (`1e-05`, `1.5e+16`).
pub(crate) fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    // Rust's `{:e}` gives the same shortest digits, as "d.ddde-7".
    let sci = format!("{:e}", x.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exponent) {
        let n_int = exponent + 1; // digits before the decimal point
        let body = if n_int <= 0 {
            format!("0.{}{}", "0".repeat((-n_int) as usize), digits)
        } else if (n_int as usize) >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(n_int as usize - digits.len()))
        } else {
            let (int_part, frac) = digits.split_at(n_int as usize);
            format!("{int_part}.{frac}")
        };
        format!("{sign}{body}")
    } else {
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exponent.abs())
    }
}
