//! Malformed tokenizer metadata and templates give clear errors, never panics. The GGUF files are
//! written by the gguf package (tests/gen_text_fixtures.py).

mod common;

use std::collections::BTreeMap;

use common::{data_path, read_fixture, smollm2_tokenizer};
use wazn_formats::GgufFile;
use wazn_text::{ChatMessage, ChatTemplate, TextError, Tokenizer, TokenizerSpec};

#[test]
fn malformed_gguf_tokenizers_are_refused_with_the_problem_named() {
    let cases: BTreeMap<String, String> = read_fixture("bad_gguf_cases.json");
    assert_eq!(cases.len(), 6);
    for (name, must_mention) in &cases {
        let file = GgufFile::open(data_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let err = Tokenizer::from_gguf_metadata(file.metadata())
            .err()
            .unwrap_or_else(|| panic!("{name} was accepted"));
        let message = err.to_string();
        assert!(message.contains(must_mention.as_str()), "{name}: {message}");
        assert!(!message.contains('\n'), "{name}: {message}");
        let expected_kind = match name.as_str() {
            "bad_missing_tokens.gguf" => matches!(err, TextError::MissingKey(_)),
            "bad_token_type_length.gguf" => matches!(err, TextError::LengthMismatch { .. }),
            "bad_unknown_model.gguf" => matches!(err, TextError::UnsupportedModel(_)),
            "bad_unknown_pre.gguf" => matches!(err, TextError::UnsupportedPreTokenizer(_)),
            "bad_merge.gguf" => matches!(err, TextError::BadMerge { .. }),
            "bad_bos_id.gguf" => matches!(err, TextError::SpecialIdOutOfRange { .. }),
            other => panic!("no expectation for {other}"),
        };
        assert!(expected_kind, "{name}: {err:?}");
    }
}

fn tiny_spec() -> TokenizerSpec {
    TokenizerSpec {
        model: "llama".into(),
        tokens: vec!["<unk>".into(), "a".into(), "b".into(), "ab".into()],
        token_types: Some(vec![2, 1, 1, 1]),
        scores: Some(vec![0.0, -1.0, -2.0, -0.5]),
        ..TokenizerSpec::default()
    }
}

#[test]
fn inconsistent_specs_are_refused() {
    assert!(Tokenizer::from_spec(tiny_spec()).is_ok());

    let empty = TokenizerSpec {
        tokens: vec![],
        ..tiny_spec()
    };
    assert!(matches!(
        Tokenizer::from_spec(empty),
        Err(TextError::EmptyVocabulary)
    ));

    let scores = TokenizerSpec {
        scores: Some(vec![0.0]),
        ..tiny_spec()
    };
    let err = Tokenizer::from_spec(scores).unwrap_err();
    assert!(
        matches!(
            err,
            TextError::LengthMismatch {
                key: "tokenizer.ggml.scores",
                ..
            }
        ),
        "{err}"
    );

    let bad_type = TokenizerSpec {
        token_types: Some(vec![2, 1, 9, 1]),
        ..tiny_spec()
    };
    let err = Tokenizer::from_spec(bad_type).unwrap_err();
    assert!(
        matches!(err, TextError::BadTokenType { index: 2, value: 9 }),
        "{err}"
    );

    let eos = TokenizerSpec {
        eos_id: Some(4),
        ..tiny_spec()
    };
    let err = Tokenizer::from_spec(eos).unwrap_err();
    assert!(
        err.to_string().contains("tokenizer.ggml.eos_token_id"),
        "{err}"
    );

    let no_merges = TokenizerSpec {
        model: "gpt2".into(),
        ..tiny_spec()
    };
    let err = Tokenizer::from_spec(no_merges).unwrap_err();
    assert!(
        matches!(err, TextError::MissingKey("tokenizer.ggml.merges")),
        "{err}"
    );

    // A merge naming a token the vocabulary lacks.
    let unknown_merge = TokenizerSpec {
        model: "gpt2".into(),
        merges: Some(vec!["a c".into()]),
        ..tiny_spec()
    };
    assert!(matches!(
        Tokenizer::from_spec(unknown_merge),
        Err(TextError::Build(_))
    ));
}

#[test]
fn decoding_an_unknown_id_is_an_error() {
    let tok = smollm2_tokenizer();
    let bad = tok.vocab_size() as u32;
    let err = tok.decode(&[1, bad], false).unwrap_err();
    assert!(
        matches!(err, TextError::TokenOutOfRange { id, .. } if id == bad),
        "{err}"
    );
}

#[test]
fn template_syntax_errors_are_reported_at_compile_time() {
    for source in [
        "{% for m in messages %}{{ m.content }}",
        "{{ messages[0",
        "{% if %}x{% endif %}",
    ] {
        let err = ChatTemplate::new(source, "<s>", "</s>").unwrap_err();
        assert!(
            matches!(err, TextError::TemplateSyntax(_)),
            "{source}: {err:?}"
        );
        assert!(!err.to_string().contains('\n'), "{err}");
    }
}

#[test]
fn template_runtime_errors_are_errors() {
    // Attribute of an undefined value: an error in Jinja2 too.
    let template = ChatTemplate::new("{{ messages[0].missing.deeper }}", "", "").unwrap();
    let err = template
        .render(&[ChatMessage::new("user", "hi")], false)
        .unwrap_err();
    assert!(matches!(err, TextError::TemplateRender(_)), "{err:?}");
}
