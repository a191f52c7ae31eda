//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`): GPT-2, Llama 3, Qwen, SmolLM...
//!
//! Such a vocabulary spells every byte as one printable character (GPT-2's byte alphabet), so
//! that a token is a string even when it holds half a UTF-8 character. Encoding cuts the text into
//! words (see `pre.rs`), spells each word in the alphabet and runs the merges.

use tokenizers::models::bpe::{Vocab, BPE};

use super::pre::PrePlan;
use super::spec::TokenType;
use crate::TextError;

/// GPT-2's byte alphabet: printable Latin-1 bytes stand for themselves; the other 68 bytes
/// (controls, space, DEL, NBSP, soft hyphen) are moved, in byte order, to U+0100 and up.
pub(crate) struct ByteAlphabet {
    byte_to_char: [char; 256],
    /// Indexed by the character's code point; every character of the alphabet is below U+0144.
    char_to_byte: Vec<Option<u8>>,
}

impl ByteAlphabet {
    pub fn new() -> ByteAlphabet {
        let mut byte_to_char = ['\0'; 256];
        let mut char_to_byte = vec![None; 0x144];
        let mut n_moved = 0u32;
        for byte in 0..=255u8 {
            let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
            let code = if printable {
                u32::from(byte)
            } else {
                n_moved += 1;
                255 + n_moved
            };
            // Every code here is below U+0144, so it is a valid char and indexes char_to_byte.
            let c = char::from_u32(code).unwrap_or('\0');
            byte_to_char[usize::from(byte)] = c;
            char_to_byte[code as usize] = Some(byte);
        }
        ByteAlphabet {
            byte_to_char,
            char_to_byte,
        }
    }

    /// The bytes a token spelled in the alphabet stands for; None when it has other characters.
    pub fn to_bytes(&self, spelled: &str) -> Option<Vec<u8>> {
        spelled
            .chars()
            .map(|c| self.char_to_byte.get(c as usize).copied().flatten())
            .collect()
    }

    /// `bytes` spelled in the alphabet.
    pub fn spell(&self, bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|&b| self.byte_to_char[usize::from(b)])
            .collect()
    }
}

/// The BPE model of a byte-level vocabulary, and the bytes each token stands for.
pub(crate) fn build(
    tokens: &[String],
    types: &[TokenType],
    merges: Option<&[String]>,
    plan: &PrePlan,
) -> Result<(BPE, Vec<Vec<u8>>), TextError> {
    let merges = merges.ok_or(TextError::MissingKey("tokenizer.ggml.merges"))?;
    let alphabet = ByteAlphabet::new();

    let mut vocab = Vocab::with_capacity(tokens.len());
    let mut pieces = Vec::with_capacity(tokens.len());
    for (id, (text, &ty)) in tokens.iter().zip(types).enumerate() {
        // Control and user-defined tokens are matched whole in the raw text, never spelled.
        let raw_text = matches!(
            ty,
            TokenType::Control | TokenType::UserDefined | TokenType::Unknown
        );
        let (key, piece) = if raw_text {
            (text.clone(), text.as_bytes().to_vec())
        } else {
            match alphabet.to_bytes(text) {
                Some(bytes) => (text.clone(), bytes),
                // A token written in plain text rather than the alphabet (some converters do
                // this): it stands for its UTF-8 bytes, so BPE must meet it under that spelling.
                None => (alphabet.spell(text.as_bytes()), text.as_bytes().to_vec()),
            }
        };
        // A repeated string keeps the last id, as llama.cpp's and transformers' maps do.
        vocab.insert(key, id as u32);
        pieces.push(piece);
    }

    let merges = merges
        .iter()
        .enumerate()
        .map(|(index, merge)| match merge.split_once(' ') {
            Some((left, right))
                if !left.is_empty() && !right.is_empty() && !right.contains(' ') =>
            {
                Ok((left.to_string(), right.to_string()))
            }
            _ => Err(TextError::BadMerge {
                index,
                merge: merge.clone(),
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;

    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(plan.ignore_merges)
        .build()
        .map_err(|e| TextError::Build(e.to_string()))?;
    Ok((bpe, pieces))
}
