//! SentencePiece vocabularies (`tokenizer.ggml.model = "llama"`): Llama 1/2, Mistral, Phi-3...
//!
//! Spaces are spelled `▁` (U+2581), a space is put in front of the text when the file asks for
//! it, and characters outside the vocabulary fall back to `<0xNN>` byte tokens. The file gives a
//! score per token instead of merges; SentencePiece's BPE joins, at every step, the adjacent pair
//! whose union is the highest-scoring token, which is BPE with merges ranked by that score.

use std::collections::HashMap;

use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::prepend::Prepend;
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::utils::Sequence;
use tokenizers::NormalizerWrapper;

use super::spec::TokenType;
use crate::TextError;

/// SentencePiece's visible space.
pub(crate) const SPACE_MARK: char = '\u{2581}';

/// The BPE model of a SentencePiece vocabulary, and the bytes each token stands for.
pub(crate) fn build(
    tokens: &[String],
    types: &[TokenType],
    scores: &[f32],
    unk_id: Option<u32>,
) -> Result<(BPE, Vec<Vec<u8>>), TextError> {
    let mut vocab = Vocab::with_capacity(tokens.len());
    for (id, text) in tokens.iter().enumerate() {
        vocab.insert(text.clone(), id as u32);
    }
    let merges = merges_from_scores(tokens, types, scores);
    let pieces = tokens
        .iter()
        .zip(types)
        .map(|(text, &ty)| piece_bytes(text, ty))
        .collect();

    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = unk_id.and_then(|id| tokens.get(id as usize)) {
        builder = builder.unk_token(unk.clone());
    }
    let bpe = builder
        .build()
        .map_err(|e| TextError::Build(e.to_string()))?;
    Ok((bpe, pieces))
}

/// Spaces become `▁`, and with `add_space_prefix` a `▁` goes in front of each stretch of text
/// (the text's start and every stretch after a special token, as llama.cpp does).
pub(crate) fn normalizer(add_space_prefix: bool) -> Result<NormalizerWrapper, TextError> {
    let replace =
        Replace::new(" ", SPACE_MARK.to_string()).map_err(|e| TextError::Build(e.to_string()))?;
    Ok(if add_space_prefix {
        Sequence::new(vec![
            Prepend::new(SPACE_MARK.to_string()).into(),
            replace.into(),
        ])
        .into()
    } else {
        replace.into()
    })
}

/// Every way to cut a token into two tokens becomes a merge, ranked by the token's score (best
/// first), then by longer left part, then longer right part, then vocabulary order: the order
/// transformers derives from the same vocabulary. Only ordinary tokens are merge results, since
/// SentencePiece never builds control, user-defined or byte tokens out of text.
fn merges_from_scores(
    tokens: &[String],
    types: &[TokenType],
    scores: &[f32],
) -> Vec<(String, String)> {
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    for (id, text) in tokens.iter().enumerate() {
        ids.insert(text.as_str(), id);
    }

    struct Merge<'a> {
        left: &'a str,
        right: &'a str,
        score: f32,
        left_chars: usize,
        right_chars: usize,
    }
    let mut merges: Vec<Merge> = Vec::new();
    let mut local: Vec<(usize, usize, Merge)> = Vec::new();
    for (id, text) in tokens.iter().enumerate() {
        // A repeated string is one vocabulary entry, the last one.
        let Some(&last_id) = ids.get(text.as_str()) else {
            continue;
        };
        if last_id != id || !is_mergeable(types[id]) {
            continue;
        }
        local.clear();
        let n_chars = text.chars().count();
        for (left_chars, (cut, _)) in text.char_indices().skip(1).enumerate() {
            let (left, right) = text.split_at(cut);
            if let (Some(&l), Some(&r)) = (ids.get(left), ids.get(right)) {
                let merge = Merge {
                    left,
                    right,
                    score: scores[id],
                    left_chars: left_chars + 1,
                    right_chars: n_chars - left_chars - 1,
                };
                local.push((l, r, merge));
            }
        }
        local.sort_by_key(|&(l, r, _)| (l, r));
        merges.extend(local.drain(..).map(|(_, _, m)| m));
    }
    // A stable sort, so equal keys keep vocabulary order.
    merges.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.left_chars.cmp(&a.left_chars))
            .then(b.right_chars.cmp(&a.right_chars))
    });
    merges
        .into_iter()
        .map(|m| (m.left.to_string(), m.right.to_string()))
        .collect()
}

fn is_mergeable(ty: TokenType) -> bool {
    matches!(
        ty,
        TokenType::Normal | TokenType::Unused | TokenType::Undefined
    )
}

/// The bytes a token stands for: `<0xNN>` is one byte, `▁` a space; control and user-defined
/// tokens give their text as written.
fn piece_bytes(text: &str, ty: TokenType) -> Vec<u8> {
    if matches!(
        ty,
        TokenType::Control | TokenType::UserDefined | TokenType::Unknown
    ) {
        return text.as_bytes().to_vec();
    }
    if let Some(byte) = parse_byte_token(text) {
        return vec![byte];
    }
    text.replace(SPACE_MARK, " ").into_bytes()
}

/// `<0xNN>` (two hex digits) → the byte NN.
fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}
