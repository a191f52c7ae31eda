//! The tokenizer a GGUF file describes, read out of its metadata and checked.

use wazn_formats::Metadata;

use crate::TextError;

/// A token's role, as `tokenizer.ggml.token_type` numbers it (the numbering of llama.cpp and
/// SentencePiece).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    /// Marks structure (`<s>`, `<|im_start|>`); only parsed from text on request.
    Control = 3,
    /// Added by hand to the vocabulary (`<think>`); always matched whole in text.
    UserDefined = 4,
    Unused = 5,
    /// One raw byte, spelled `<0xNN>` (SentencePiece byte fallback).
    Byte = 6,
}

impl TokenType {
    fn from_i32(index: usize, value: i32) -> Result<TokenType, TextError> {
        Ok(match value {
            0 => TokenType::Undefined,
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => return Err(TextError::BadTokenType { index, value }),
        })
    }
}

/// Everything needed to build a [`crate::Tokenizer`], under GGUF's names. Built from a file with
/// [`TokenizerSpec::from_gguf_metadata`], or by hand for vocabularies from elsewhere.
#[derive(Clone, Debug, Default)]
pub struct TokenizerSpec {
    /// `tokenizer.ggml.model`: "gpt2" (byte-level BPE) or "llama" (SentencePiece).
    pub model: String,
    /// `tokenizer.ggml.pre`: how byte-level BPE text is cut into words.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`: the vocabulary, indexed by token id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`, one per token, as stored (see [`TokenType`]).
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.scores`, one per token (SentencePiece merge priorities).
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.merges`: "left right" pairs, best first (byte-level BPE).
    pub merges: Option<Vec<String>>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub eot_id: Option<u32>,
    pub eom_id: Option<u32>,
    pub unk_id: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_space_prefix: Option<bool>,
    /// `tokenizer.ggml.fim_pre_token_id` (older files: `prefix_token_id`): fill-in-the-middle.
    pub fim_pre_id: Option<u32>,
    /// `tokenizer.ggml.fim_suf_token_id` (older files: `suffix_token_id`).
    pub fim_suf_id: Option<u32>,
    /// `tokenizer.ggml.fim_mid_token_id` (older files: `middle_token_id`).
    pub fim_mid_id: Option<u32>,
}

impl TokenizerSpec {
    /// Reads the `tokenizer.ggml.*` keys. Only the model name and the token list are required;
    /// the rest is checked when the tokenizer is built.
    pub fn from_gguf_metadata(md: &Metadata) -> Result<TokenizerSpec, TextError> {
        let model = md
            .get_str("tokenizer.ggml.model")?
            .ok_or(TextError::MissingKey("tokenizer.ggml.model"))?
            .to_string();
        let tokens = md
            .get_str_array("tokenizer.ggml.tokens")?
            .ok_or(TextError::MissingKey("tokenizer.ggml.tokens"))?
            .into_iter()
            .map(str::to_string)
            .collect();
        let merges = md
            .get_str_array("tokenizer.ggml.merges")?
            .map(|m| m.into_iter().map(str::to_string).collect());
        Ok(TokenizerSpec {
            model,
            pre: md.get_str("tokenizer.ggml.pre")?.map(str::to_string),
            tokens,
            token_types: md.get_i32_array("tokenizer.ggml.token_type")?,
            scores: md.get_f32_array("tokenizer.ggml.scores")?,
            merges,
            bos_id: md.get_u32("tokenizer.ggml.bos_token_id")?,
            eos_id: md.get_u32("tokenizer.ggml.eos_token_id")?,
            eot_id: md.get_u32("tokenizer.ggml.eot_token_id")?,
            eom_id: md.get_u32("tokenizer.ggml.eom_token_id")?,
            unk_id: md.get_u32("tokenizer.ggml.unknown_token_id")?,
            add_bos: md.get_bool("tokenizer.ggml.add_bos_token")?,
            add_eos: md.get_bool("tokenizer.ggml.add_eos_token")?,
            add_space_prefix: md.get_bool("tokenizer.ggml.add_space_prefix")?,
            fim_pre_id: first_u32(md, "fim_pre_token_id", "prefix_token_id")?,
            fim_suf_id: first_u32(md, "fim_suf_token_id", "suffix_token_id")?,
            fim_mid_id: first_u32(md, "fim_mid_token_id", "middle_token_id")?,
        })
    }

    /// The token types, one per token; all normal when the file has none (as llama.cpp reads it).
    pub(crate) fn checked_token_types(&self) -> Result<Vec<TokenType>, TextError> {
        let n_tokens = self.tokens.len();
        match &self.token_types {
            None => Ok(vec![TokenType::Normal; n_tokens]),
            Some(raw) if raw.len() != n_tokens => Err(TextError::LengthMismatch {
                key: "tokenizer.ggml.token_type",
                len: raw.len(),
                n_tokens,
            }),
            Some(raw) => raw
                .iter()
                .enumerate()
                .map(|(index, &value)| TokenType::from_i32(index, value))
                .collect(),
        }
    }

    /// The scores, one per token; all zero when the file has none (as llama.cpp reads it).
    pub(crate) fn checked_scores(&self) -> Result<Vec<f32>, TextError> {
        let n_tokens = self.tokens.len();
        match &self.scores {
            None => Ok(vec![0.0; n_tokens]),
            Some(s) if s.len() != n_tokens => Err(TextError::LengthMismatch {
                key: "tokenizer.ggml.scores",
                len: s.len(),
                n_tokens,
            }),
            Some(s) => Ok(s.clone()),
        }
    }

    /// A special token id, refused when it names no token.
    pub(crate) fn checked_id(
        &self,
        key: &'static str,
        id: Option<u32>,
    ) -> Result<Option<u32>, TextError> {
        match id {
            Some(id) if id as usize >= self.tokens.len() => Err(TextError::SpecialIdOutOfRange {
                key,
                id,
                n_tokens: self.tokens.len(),
            }),
            other => Ok(other),
        }
    }
}

/// `tokenizer.ggml.<key>`, else `tokenizer.ggml.<older>`.
fn first_u32(md: &Metadata, key: &str, older: &str) -> Result<Option<u32>, TextError> {
    match md.get_u32(&format!("tokenizer.ggml.{key}"))? {
        Some(id) => Ok(Some(id)),
        None => Ok(md.get_u32(&format!("tokenizer.ggml.{older}"))?),
    }
}
