//! wazn's text layer: tokenizers built from GGUF metadata, an incremental detokenizer that never
//! emits half a UTF-8 character, and chat templates rendered as transformers renders them.

mod chat_template;
mod detokenizer;
mod error;
mod tokenizer;

pub use chat_template::{ChatMessage, ChatTemplate};
pub use detokenizer::Detokenizer;
pub use error::TextError;
pub use tokenizer::{TokenType, Tokenizer, TokenizerSpec};
