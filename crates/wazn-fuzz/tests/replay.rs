//! Every committed input of every fuzz target, replayed: the seeds written by hand or by
//! tools (`fuzz/seeds/TARGET/`) and the corpus the fuzzer grew from them and that was
//! minimized (`fuzz/corpus/TARGET/`). A regression of anything the fuzzer once reached
//! fails here, on stable, in the ordinary test suite.

use std::path::{Path, PathBuf};

use wazn_fuzz::{Target, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn inputs(name: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for kind in ["seeds", "corpus"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind).join(name)) else {
            continue;
        };
        files.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
    }
    files.sort();
    files
}

fn replay(name: &str) {
    let target: Target = TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .expect("a target of that name");
    let files = inputs(name);
    assert!(!files.is_empty(), "no seeds or corpus for {name}");
    for path in &files {
        let data = std::fs::read(path).expect("read an input");
        let outcome = std::panic::catch_unwind(|| target(&data));
        assert!(outcome.is_ok(), "{name} fails on {}", path.display());
    }
}

#[test]
fn every_target_has_a_test_here() {
    let source = include_str!("replay.rs");
    let listed = source.rsplit("replayed!(").next().unwrap_or_default();
    for (name, _) in TARGETS {
        assert!(listed.contains(name), "{name} is not replayed");
    }
}

macro_rules! replayed {
    ($($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name));
            }
        )*
    };
}

replayed!(
    gguf_parse,
    safetensors_header,
    hf_config,
    tokenizer_json,
    chat_template,
    harmony_reply,
    tool_calls,
    http_bodies
);
