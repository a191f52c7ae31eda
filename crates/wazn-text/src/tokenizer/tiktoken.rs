//! o200k_harmony, the vocabulary of OpenAI's gpt-oss models, built without a download.
//!
//! The 199998 BPE ranks are tiktoken's `o200k_base` file, which the `tiktoken-rs` crate compiles
//! into the binary; the harmony special tokens (ids 199998..=201087) come on top. Encoding runs
//! in `tiktoken-rs`'s `CoreBPE`, which applies ranks the way tiktoken does (no merge list).

use tiktoken_rs::CoreBPE;

use super::bpe::ByteAlphabet;
use super::spec::TokenType;
use crate::TextError;

/// Ids of o200k_harmony's named special tokens.
pub mod o200k_ids {
    pub const STARTOFTEXT: u32 = 199_998;
    pub const ENDOFTEXT: u32 = 199_999;
    pub const RETURN: u32 = 200_002;
    pub const CONSTRAIN: u32 = 200_003;
    pub const CHANNEL: u32 = 200_005;
    pub const START: u32 = 200_006;
    pub const END: u32 = 200_007;
    pub const MESSAGE: u32 = 200_008;
    pub const CALL: u32 = 200_012;
}

/// Number of ordinary BPE ranks in o200k_base.
pub(crate) const O200K_N_RANKS: u32 = 199_998;
/// Vocabulary rows of gpt-oss (ids above the last reserved token do not exist).
pub(crate) const O200K_HARMONY_VOCAB: u32 = 201_088;

/// The vocabulary of o200k_harmony: each token spelled in GPT-2's byte alphabet (as Hugging
/// Face's tokenizer.json spells it, so `token_text` looks like other byte-level vocabularies),
/// its type, and its bytes; special tokens are Control and stand for their own text.
pub(crate) struct O200kVocab {
    pub bpe: CoreBPE,
    pub tokens: Vec<String>,
    pub types: Vec<TokenType>,
    pub pieces: Vec<Vec<u8>>,
}

pub(crate) fn o200k_harmony() -> Result<O200kVocab, TextError> {
    let bpe = tiktoken_rs::o200k_harmony()
        .map_err(|e| TextError::Build(format!("o200k_harmony: {e}")))?;
    let alphabet = ByteAlphabet::new();
    let n = O200K_HARMONY_VOCAB as usize;
    let mut tokens = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    let mut pieces = Vec::with_capacity(n);
    for id in 0..O200K_HARMONY_VOCAB {
        let bytes = bpe
            .decode_bytes(&[id])
            .map_err(|_| TextError::Build(format!("o200k_harmony has no token {id}")))?;
        if id < O200K_N_RANKS {
            tokens.push(alphabet.spell(&bytes));
            types.push(TokenType::Normal);
        } else {
            tokens.push(String::from_utf8_lossy(&bytes).into_owned());
            types.push(TokenType::Control);
        }
        pieces.push(bytes);
    }
    Ok(O200kVocab {
        bpe,
        tokens,
        types,
        pieces,
    })
}

/// The ids of `text`: special-token strings become their ids when `parse_special`, and are
/// otherwise encoded as the characters they are made of (tiktoken's `encode_ordinary`).
pub(crate) fn encode(
    bpe: &CoreBPE,
    text: &str,
    parse_special: bool,
) -> Result<Vec<u32>, TextError> {
    if parse_special {
        let allowed = bpe.special_tokens();
        bpe.encode(text, &allowed)
            .map(|(ids, _)| ids)
            .map_err(|e| TextError::Encode(e.to_string()))
    } else {
        Ok(bpe.encode_ordinary(text))
    }
}
