//! `wazn run --json-schema` and `--grammar` on the default model: the output follows the
//! grammar.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn model() -> PathBuf {
    wazn_formats::model_cache::default_model_path()
        .filter(|p| p.is_file())
        .expect("the default model is missing: run scripts/fetch-default-model")
}

fn scratch(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("constrained");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The text `wazn run --json` generated with `extra` arguments.
fn generated(extra: &[&str]) -> String {
    let model = model();
    let mut args = vec![
        "run",
        "-m",
        model.to_str().unwrap(),
        "--temp",
        "0",
        "--json",
        "--chat",
    ];
    args.extend_from_slice(extra);
    let out = Command::new(env!("CARGO_BIN_EXE_wazn"))
        .args(&args)
        .output()
        .expect("run wazn");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["finish_reason"], "stop", "{doc}");
    doc["text"].as_str().unwrap().to_string()
}

#[test]
fn json_schema_and_grammar_files_constrain_the_output() {
    let schema = scratch(
        "city.json",
        r#"{"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
            "population": {"type": "integer", "minimum": 1}}, "required": ["city", "population"],
            "additionalProperties": false}"#,
    );
    let text = generated(&[
        "--json-schema",
        schema.to_str().unwrap(),
        "Name a big city.",
    ]);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert!(
        v["city"].as_str().is_some_and(|c| c.chars().count() <= 30),
        "{text}"
    );
    assert!(v["population"].as_i64().is_some_and(|p| p >= 1), "{text}");

    let grammar = scratch(
        "yes-no.lark",
        "start: (\"yes\" | \"no\") \", because \" REASON\nREASON: /[a-z ]{1,40}/\n",
    );
    let text = generated(&["--grammar", grammar.to_str().unwrap(), "Is the sky blue?"]);
    let (answer, reason) = text
        .split_once(", because ")
        .unwrap_or_else(|| panic!("{text:?}"));
    assert!(answer == "yes" || answer == "no", "{text:?}");
    assert!(!reason.is_empty() && reason.len() <= 40, "{text:?}");
    assert!(
        reason.chars().all(|c| c.is_ascii_lowercase() || c == ' '),
        "{text:?}"
    );
}
