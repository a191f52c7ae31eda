//! Tools as harmony shows them to the model: each namespace a TypeScript `namespace`, each
//! tool a function type whose argument type is its JSON schema written as TypeScript, with
//! descriptions, titles, examples and defaults as `//` comments. The byte layout follows
//! OpenAI's harmony renderer exactly (checked by the fixture tests), quirks included.

use std::collections::BTreeMap;

use super::{OrderedJson, ToolNamespace};

/// Where a default value is rendered decides how a string default is quoted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DefaultSite {
    /// On a property: strings of enum schemas are written bare.
    Property,
    /// On a variant of a top-level `oneOf`: enum strings are written as JSON.
    TopLevelVariant,
}

fn is_enum(schema: &OrderedJson) -> bool {
    schema
        .get("enum")
        .and_then(OrderedJson::as_array)
        .is_some_and(|values| !values.is_empty())
}

fn is_nullable(schema: &OrderedJson) -> bool {
    schema
        .get("nullable")
        .and_then(OrderedJson::as_bool)
        .unwrap_or(false)
}

fn str_field<'a>(schema: &'a OrderedJson, key: &str) -> Option<&'a str> {
    schema.get(key).and_then(OrderedJson::as_str)
}

/// `default: ...` for `schema`'s default value, if it has one.
fn default_comment(schema: &OrderedJson, site: DefaultSite) -> Option<String> {
    let default = schema.get("default")?;
    Some(match default {
        OrderedJson::String(s) if !is_enum(schema) => format!("default: \"{s}\""),
        OrderedJson::String(s) if site == DefaultSite::Property => format!("default: {s}"),
        other => format!("default: {}", other.to_json_string()),
    })
}

/// The type with ` | null` added when the schema is nullable and the type lacks it.
fn with_null(schema: &OrderedJson, ts: String) -> String {
    if is_nullable(schema) && !ts.contains("null") {
        format!("{ts} | null")
    } else {
        ts
    }
}

/// `schema` as a TypeScript type; `indent` prefixes the lines of nested objects.
pub(super) fn schema_to_ts(schema: &OrderedJson, indent: &str) -> String {
    if let Some(variants) = schema.get("oneOf").and_then(OrderedJson::as_array) {
        return top_level_one_of(variants, indent);
    }
    if let Some(types) = schema.get("type").and_then(OrderedJson::as_array) {
        let names: Vec<&str> = types
            .iter()
            .filter_map(OrderedJson::as_str)
            .map(|t| if t == "integer" { "number" } else { t })
            .collect();
        if !names.is_empty() {
            return names.join(" | ");
        }
    }
    match str_field(schema, "type") {
        Some("object") => object_to_ts(schema, indent),
        Some("string") => {
            let values: Vec<String> = schema
                .get("enum")
                .and_then(OrderedJson::as_array)
                .unwrap_or_default()
                .iter()
                .filter_map(OrderedJson::as_str)
                .map(|v| format!("\"{v}\""))
                .collect();
            if values.is_empty() {
                "string".to_string()
            } else {
                values.join(" | ")
            }
        }
        Some("number" | "integer") => "number".to_string(),
        Some("boolean") => "boolean".to_string(),
        Some("array") => match schema.get("items") {
            Some(items) => format!("{}[]", schema_to_ts(items, indent)),
            None => "Array<any>".to_string(),
        },
        _ => "any".to_string(),
    }
}

/// A schema that is a `oneOf`: each variant on its own ` | ` line with its comments.
fn top_level_one_of(variants: &[OrderedJson], indent: &str) -> String {
    let mut out = String::new();
    for variant in variants {
        out.push_str(&format!("\n{indent} | "));
        out.push_str(&with_null(
            variant,
            schema_to_ts(variant, &format!("{indent}   ")),
        ));
        let comments: Vec<String> = str_field(variant, "description")
            .map(str::to_string)
            .into_iter()
            .chain(default_comment(variant, DefaultSite::TopLevelVariant))
            .collect();
        if !comments.is_empty() {
            out.push_str(&format!(" // {}", comments.join(" ")));
        }
    }
    out
}

fn object_to_ts(schema: &OrderedJson, indent: &str) -> String {
    let mut out = String::new();
    if let Some(desc) = str_field(schema, "description") {
        out.push_str(&format!("{indent}// {desc}\n"));
    }
    out.push_str("{\n");
    let required: Vec<&str> = schema
        .get("required")
        .and_then(OrderedJson::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(OrderedJson::as_str)
        .collect();
    let properties = schema
        .get("properties")
        .and_then(OrderedJson::as_object)
        .unwrap_or_default();
    for (key, prop) in properties {
        let optional = if required.contains(&key.as_str()) {
            ""
        } else {
            "?"
        };
        if let Some(title) = str_field(prop, "title") {
            out.push_str(&format!("{indent}// {title}\n{indent}//\n"));
        }
        let has_one_of = prop.get("oneOf").is_some();
        if !has_one_of {
            if let Some(desc) = str_field(prop, "description") {
                out.push_str(&format!("{indent}// {desc}\n"));
            }
        }
        if let Some(examples) = prop.get("examples").and_then(OrderedJson::as_array) {
            if !examples.is_empty() {
                out.push_str(&format!("{indent}// Examples:\n"));
                for example in examples.iter().filter_map(OrderedJson::as_str) {
                    out.push_str(&format!("{indent}// - \"{example}\"\n"));
                }
            }
        }
        if let Some(variants) = prop.get("oneOf").and_then(OrderedJson::as_array) {
            property_one_of(&mut out, key, optional, prop, variants, indent);
            continue;
        }
        let ts = with_null(prop, schema_to_ts(prop, &format!("{indent}    ")));
        out.push_str(&format!("{indent}{key}{optional}: {ts},"));
        if !has_one_of {
            if let Some(comment) = default_comment(prop, DefaultSite::Property) {
                out.push_str(&format!(" // {comment}"));
            }
        }
        out.push('\n');
    }
    out.push_str(&format!("{indent}}}"));
    out
}

/// A property whose schema is a `oneOf`: its comments above, then one ` | ` line per variant.
fn property_one_of(
    out: &mut String,
    key: &str,
    optional: &str,
    prop: &OrderedJson,
    variants: &[OrderedJson],
    indent: &str,
) {
    let prop_desc = str_field(prop, "description");
    // A description repeated by the first variant is written once, above the property.
    let first_repeats = variants
        .first()
        .and_then(|v| str_field(v, "description"))
        .is_some_and(|d| Some(d) == prop_desc);
    let desc_above = match prop_desc {
        Some(desc) if !first_repeats => {
            out.push_str(&format!("{indent}// {desc}\n"));
            true
        }
        _ => false,
    };
    if let Some(comment) = default_comment(prop, DefaultSite::Property) {
        out.push_str(&format!("{indent}// {comment}\n"));
    }
    out.push_str(&format!("{indent}{key}{optional}:\n"));
    for (i, variant) in variants.iter().enumerate() {
        out.push_str(&format!("{indent} | "));
        out.push_str(&with_null(
            variant,
            schema_to_ts(variant, &format!("{indent}   ")),
        ));
        let mut comments = Vec::new();
        if !(i == 0 && desc_above) {
            if let Some(desc) = str_field(variant, "description") {
                if Some(desc) != prop_desc {
                    comments.push(desc.to_string());
                }
            }
        }
        comments.extend(default_comment(variant, DefaultSite::Property));
        if !comments.is_empty() {
            out.push_str(&format!(" // {}", comments.join(" ")));
        }
        out.push('\n');
    }
    out.push_str(&format!("{indent},\n"));
}

/// The `# Tools` section: one `## {namespace}` block per namespace, in name order.
pub(super) fn tools_section(namespaces: &BTreeMap<String, ToolNamespace>) -> String {
    let mut sections = vec!["# Tools".to_string()];
    for ns in namespaces.values() {
        let has_tools = !ns.tools.is_empty();
        let mut lines = vec![format!("## {}\n", ns.name)];
        if let Some(desc) = &ns.description {
            for line in desc.lines() {
                lines.push(if has_tools {
                    format!("// {line}")
                } else {
                    line.to_string()
                });
            }
        }
        if has_tools {
            lines.push(format!("namespace {} {{\n", ns.name));
            for tool in &ns.tools {
                lines.extend(tool.description.lines().map(|l| format!("// {l}")));
                match &tool.parameters {
                    Some(params) => lines.push(format!(
                        "type {} = (_: {}) => any;\n",
                        tool.name,
                        schema_to_ts(params, "")
                    )),
                    None => lines.push(format!("type {} = () => any;\n", tool.name)),
                }
            }
            lines.push(format!("}} // namespace {}", ns.name));
        }
        sections.push(lines.join("\n"));
    }
    sections.join("\n\n")
}
