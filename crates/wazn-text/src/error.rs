//! The one error type of the text layer.

use wazn_formats::FormatError;

/// Everything that can go wrong while building a tokenizer, encoding, decoding, rendering a
/// chat template or writing a tool-call grammar. Each message is one line and names the problem.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("tokenizer metadata: {0}")]
    Metadata(#[from] FormatError),

    #[error("GGUF metadata has no {0}")]
    MissingKey(&'static str),

    #[error("{key} has {len} entries but tokenizer.ggml.tokens has {n_tokens}")]
    LengthMismatch {
        key: &'static str,
        len: usize,
        n_tokens: usize,
    },

    #[error("unsupported tokenizer model {0:?} in tokenizer.ggml.model (supported: \"gpt2\", \"llama\")")]
    UnsupportedModel(String),

    #[error("unsupported pre-tokenizer {0:?} in tokenizer.ggml.pre")]
    UnsupportedPreTokenizer(String),

    #[error("tokenizer.ggml.token_type[{index}] = {value} is not a known token type (0..=6)")]
    BadTokenType { index: usize, value: i32 },

    #[error("{key} = {id} is outside the vocabulary of {n_tokens} tokens")]
    SpecialIdOutOfRange {
        key: &'static str,
        id: u32,
        n_tokens: usize,
    },

    #[error("tokenizer.ggml.merges[{index}] = {merge:?} is not two tokens separated by one space")]
    BadMerge { index: usize, merge: String },

    #[error("the vocabulary has no tokens")]
    EmptyVocabulary,

    #[error("could not build the tokenizer: {0}")]
    Build(String),

    #[error("could not encode the text: {0}")]
    Encode(String),

    #[error("token id {id} is outside the vocabulary of {n_tokens} tokens")]
    TokenOutOfRange { id: u32, n_tokens: usize },

    #[error("chat template does not compile: {0}")]
    TemplateSyntax(String),

    #[error("chat template failed to render: {0}")]
    TemplateRender(String),

    #[error("chat template raised an exception: {0}")]
    TemplateRaised(String),

    #[error("harmony: {0}")]
    Harmony(String),

    #[error("tool name {0:?} is not 1 to 64 characters of A-Z, a-z, 0-9, '_', '.', '-'")]
    BadToolName(String),

    #[error("tools: {0}")]
    Tools(String),
}
