//! wazn's text layer: tokenizers built from GGUF metadata (and o200k_harmony, built in), an
//! incremental detokenizer that never emits half a UTF-8 character, chat templates rendered as
//! transformers renders them, and gpt-oss's harmony format ([`harmony`]).

mod chat_format;
mod chat_template;
mod detokenizer;
mod error;
pub mod harmony;
pub mod json_style;
mod model_text;
pub mod think;
mod tokenizer;
pub mod tool_calls;

pub use chat_format::{harmony_chat, tokenize_rendered, ChatFormat};
pub use chat_template::{budget as template_budget, ChatMessage, ChatTemplate, MAX_RENDERED_BYTES};
pub use detokenizer::Detokenizer;
pub use error::TextError;
pub use model_text::ModelText;
pub use tokenizer::{o200k_ids, FimTokens, HfSpecialTokens, TokenType, Tokenizer, TokenizerSpec};
