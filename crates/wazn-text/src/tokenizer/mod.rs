//! Text ↔ token ids, for the vocabularies GGUF files carry.
//!
//! The encoding itself runs in Hugging Face's `tokenizers` crate; this module builds its model,
//! normalizer and pre-tokenizer from the file's metadata (see `bpe.rs`, `spm.rs`, `pre.rs`) and
//! adds what GGUF defines on top: which tokens are special, the BOS/EOS rule, the
//! end-of-generation set. Decoding is done here from each token's bytes, so that the
//! incremental [`crate::Detokenizer`] and [`Tokenizer::decode`] agree byte for byte.
//!
//! [`Tokenizer::o200k_harmony`] is the one vocabulary that does not come from a file: gpt-oss's
//! tiktoken ranks, compiled in (see `tiktoken.rs`), behind the same API.

mod bpe;
mod fim;
mod hf_json;
mod pre;
mod spec;
mod spm;
mod tiktoken;

use tokenizers::{AddedToken, Tokenizer as HfTokenizer};
use wazn_formats::Metadata;

use crate::TextError;
pub use fim::FimTokens;
pub use hf_json::HfSpecialTokens;
pub use spec::{TokenType, TokenizerSpec};
pub use tiktoken::o200k_ids;

/// Token texts that end a generation in common chat models, whatever their ids
/// (llama.cpp's end-of-generation set).
const EOG_TEXTS: &[&str] = &[
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<end_of_turn>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "</s>",
    "<|eom_id|>",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    /// Byte-level BPE.
    Gpt2,
    /// SentencePiece.
    Llama,
    /// tiktoken ranks (o200k_harmony).
    Tiktoken,
}

/// What turns text into ids.
enum Encoder {
    /// Hugging Face `tokenizers`, built from GGUF metadata.
    Hf {
        /// Recognises control tokens written in the text.
        parses_special: Box<HfTokenizer>,
        /// Reads control-token strings in the text as plain text.
        text_only: Box<HfTokenizer>,
    },
    /// tiktoken's rank-based BPE.
    Tiktoken(Box<tiktoken_rs::CoreBPE>),
}

/// A tokenizer built from a GGUF file's vocabulary, or the built-in o200k_harmony.
pub struct Tokenizer {
    family: Family,
    /// The vocabulary as stored, indexed by id.
    tokens: Vec<String>,
    types: Vec<TokenType>,
    /// The bytes each token stands for, indexed by id.
    pieces: Vec<Vec<u8>>,
    encoder: Encoder,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    /// End-of-generation ids, sorted.
    eog_ids: Vec<u32>,
    /// SentencePiece's added space in front of the text is taken off again when decoding.
    strip_leading_space: bool,
    /// Fill-in-the-middle tokens, when the vocabulary has all three.
    fim: Option<FimTokens>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("family", &self.family)
            .field("vocab_size", &self.tokens.len())
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// The tokenizer described by a GGUF file's `tokenizer.ggml.*` keys.
    pub fn from_gguf_metadata(md: &Metadata) -> Result<Tokenizer, TextError> {
        Tokenizer::from_spec(TokenizerSpec::from_gguf_metadata(md)?)
    }

    /// The tokenizer a [`TokenizerSpec`] describes; every inconsistency is an error.
    pub fn from_spec(spec: TokenizerSpec) -> Result<Tokenizer, TextError> {
        if spec.tokens.is_empty() {
            return Err(TextError::EmptyVocabulary);
        }
        let types = spec.checked_token_types()?;
        let bos_id = spec.checked_id("tokenizer.ggml.bos_token_id", spec.bos_id)?;
        let eos_id = spec.checked_id("tokenizer.ggml.eos_token_id", spec.eos_id)?;
        let eot_id = spec.checked_id("tokenizer.ggml.eot_token_id", spec.eot_id)?;
        let eom_id = spec.checked_id("tokenizer.ggml.eom_token_id", spec.eom_id)?;
        let unk_id = spec.checked_id("tokenizer.ggml.unknown_token_id", spec.unk_id)?;
        let fim_ids = [
            spec.checked_id("tokenizer.ggml.fim_pre_token_id", spec.fim_pre_id)?,
            spec.checked_id("tokenizer.ggml.fim_suf_token_id", spec.fim_suf_id)?,
            spec.checked_id("tokenizer.ggml.fim_mid_token_id", spec.fim_mid_id)?,
        ];

        let (family, mut hf, pieces, add_bos_default) = match spec.model.as_str() {
            "gpt2" => {
                let plan = pre::plan_for(spec.pre.as_deref())?;
                let (model, pieces) =
                    bpe::build(&spec.tokens, &types, spec.merges.as_deref(), &plan)?;
                let mut hf = HfTokenizer::new(model);
                hf.with_pre_tokenizer(Some(plan.pre_tokenizer()?));
                (Family::Gpt2, hf, pieces, plan.add_bos_default)
            }
            "llama" => {
                let scores = spec.checked_scores()?;
                let (model, pieces) = spm::build(&spec.tokens, &types, &scores, unk_id)?;
                let mut hf = HfTokenizer::new(model);
                hf.with_normalizer(Some(spm::normalizer(
                    spec.add_space_prefix.unwrap_or(true),
                )?));
                (Family::Llama, hf, pieces, true)
            }
            other => return Err(TextError::UnsupportedModel(other.to_string())),
        };
        add_vocabulary_specials(&mut hf, &spec.tokens, &types);
        let mut text_only = hf.clone();
        text_only.set_encode_special_tokens(true);

        let mut eog_ids: Vec<u32> = [eos_id, eot_id, eom_id].into_iter().flatten().collect();
        eog_ids.extend(
            spec.tokens
                .iter()
                .enumerate()
                .filter(|(_, t)| EOG_TEXTS.contains(&t.as_str()))
                .map(|(id, _)| id as u32),
        );
        eog_ids.sort_unstable();
        eog_ids.dedup();

        Ok(Tokenizer {
            family,
            fim: fim::find(fim_ids, &spec.tokens),
            strip_leading_space: family == Family::Llama && spec.add_space_prefix.unwrap_or(true),
            tokens: spec.tokens,
            types,
            pieces,
            encoder: Encoder::Hf {
                parses_special: Box::new(hf),
                text_only: Box::new(text_only),
            },
            bos_id,
            eos_id,
            add_bos: spec.add_bos.unwrap_or(add_bos_default),
            add_eos: spec.add_eos.unwrap_or(false),
            eog_ids,
        })
    }

    /// o200k_harmony, the tokenizer of gpt-oss, from ranks compiled into the binary (no
    /// download). No BOS is added; `<|return|>` is the EOS, and generation ends at
    /// `<|return|>`, `<|call|>` or `<|endoftext|>` (not at `<|end|>`, which closes a message
    /// in the middle of a harmony turn).
    pub fn o200k_harmony() -> Result<Tokenizer, TextError> {
        let vocab = tiktoken::o200k_harmony()?;
        Ok(Tokenizer {
            family: Family::Tiktoken,
            tokens: vocab.tokens,
            types: vocab.types,
            pieces: vocab.pieces,
            encoder: Encoder::Tiktoken(Box::new(vocab.bpe)),
            bos_id: Some(o200k_ids::STARTOFTEXT),
            eos_id: Some(o200k_ids::RETURN),
            add_bos: false,
            add_eos: false,
            eog_ids: vec![o200k_ids::ENDOFTEXT, o200k_ids::RETURN, o200k_ids::CALL],
            strip_leading_space: false,
            fim: None,
        })
    }

    /// The ids of `text`. `add_special` applies the file's BOS/EOS rule; `parse_special` makes
    /// control-token strings in the text (`<|im_start|>`) their tokens, and otherwise they are
    /// encoded as the characters they are made of. User-defined tokens are always matched.
    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TextError> {
        let body = match &self.encoder {
            Encoder::Hf {
                parses_special,
                text_only,
            } => {
                let hf = if parse_special {
                    parses_special
                } else {
                    text_only
                };
                hf.encode_fast(text, false)
                    .map_err(|e| TextError::Encode(e.to_string()))?
                    .get_ids()
                    .to_vec()
            }
            Encoder::Tiktoken(bpe) => tiktoken::encode(bpe, text, parse_special)?,
        };
        let mut ids = Vec::with_capacity(body.len() + 2);
        if add_special && self.add_bos {
            ids.extend(self.bos_id);
        }
        ids.extend_from_slice(&body);
        if add_special && self.add_eos {
            ids.extend(self.eos_id);
        }
        Ok(ids)
    }

    /// The text of `ids`; invalid UTF-8 becomes U+FFFD. `skip_special` leaves out control and
    /// unknown tokens.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TextError> {
        let mut bytes = Vec::new();
        for &id in ids {
            let piece = self.piece(id).ok_or(TextError::TokenOutOfRange {
                id,
                n_tokens: self.tokens.len(),
            })?;
            if !(skip_special && self.is_special(id)) {
                bytes.extend_from_slice(piece);
            }
        }
        if self.strip_leading_space && bytes.first() == Some(&b' ') {
            bytes.remove(0);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The raw bytes one token stands for (possibly part of a UTF-8 character); special tokens
    /// give their text.
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        self.piece(id).map(<[u8]>::to_vec)
    }

    /// The token that stands for exactly `text` (`<tool_call>`, `</think>`), when the
    /// vocabulary has one: what encoding `text` with special tokens parsed gives as its only
    /// token.
    pub fn single_token(&self, text: &str) -> Option<u32> {
        match self.encode(text, false, true).as_deref() {
            Ok(&[id]) if self.piece(id) == Some(text.as_bytes()) => Some(id),
            _ => None,
        }
    }

    pub(crate) fn piece(&self, id: u32) -> Option<&[u8]> {
        self.pieces.get(id as usize).map(Vec::as_slice)
    }

    /// Whether decoding strips one leading space (SentencePiece with a space prefix).
    pub(crate) fn strips_leading_space(&self) -> bool {
        self.strip_leading_space
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// Whether `encode(.., add_special = true, ..)` puts BOS in front.
    pub fn adds_bos(&self) -> bool {
        self.add_bos && self.bos_id.is_some()
    }

    /// Whether `encode(.., add_special = true, ..)` puts EOS at the end (the token an
    /// embedding model's last-token pooling reads).
    pub fn adds_eos(&self) -> bool {
        self.add_eos && self.eos_id.is_some()
    }

    /// The ids that end a generation, sorted: EOS, EOT and EOM from the file, and every token
    /// spelled like a known end-of-turn marker.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog_ids
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.eog_ids.binary_search(&id).is_ok()
    }

    /// Control and unknown tokens: left out by `decode(.., skip_special = true)`.
    pub fn is_special(&self, id: u32) -> bool {
        matches!(
            self.types.get(id as usize),
            Some(TokenType::Control | TokenType::Unknown)
        )
    }

    /// The token as the vocabulary spells it (`Ġthe`, `▁the`, `<0x0A>`, `<|im_end|>`).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// The fill-in-the-middle tokens (prefix, suffix, middle), when the vocabulary has them.
    pub fn fim_tokens(&self) -> Option<FimTokens> {
        self.fim
    }
}

/// Control and unknown tokens become special added tokens (matched in text only when asked);
/// user-defined ones become plain added tokens (always matched). Both match the raw text.
fn add_vocabulary_specials(hf: &mut HfTokenizer, tokens: &[String], types: &[TokenType]) {
    let added = |wanted: fn(TokenType) -> bool, special: bool| -> Vec<AddedToken> {
        tokens
            .iter()
            .zip(types)
            // An empty pattern would match everywhere.
            .filter(|(text, &ty)| !text.is_empty() && wanted(ty))
            .map(|(text, _)| AddedToken::from(text.clone(), special).normalized(false))
            .collect()
    };
    let special = added(
        |ty| matches!(ty, TokenType::Control | TokenType::Unknown),
        true,
    );
    let user_defined = added(|ty| ty == TokenType::UserDefined, false);
    hf.add_special_tokens(&special);
    hf.add_tokens(&user_defined);
}
