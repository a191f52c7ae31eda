//! The `logprobs` object of a text completion, in OpenAI's legacy shape as vLLM writes it:
//! `tokens` (each token decoded on its own), `token_logprobs`, `top_logprobs` (for each
//! token a `{token: logprob}` object of the chosen token and the best `k`, so up to k + 1
//! entries) and `text_offset` (each token's character offset in the choice's text). With
//! `echo` the prompt's tokens come first; the first of them has no context to be predicted
//! from, so its log-probability and alternatives are `null`.

use serde_json::{json, Map, Value};
use wazn_text::Tokenizer;

/// The lowest log-probability written: JSON has no -infinity (OpenAI's and vLLM's floor).
const FLOOR: f32 = -9999.0;

/// One token of the object.
pub struct Row<'a> {
    pub token: u32,
    /// `None`: the first prompt token (or one never scored).
    pub logprob: Option<f32>,
    /// Best alternatives, best first.
    pub top: &'a [(u32, f32)],
}

/// Tokens and the text they were read from (the prompt, or what was generated).
pub struct Segment<'a> {
    pub rows: Vec<Row<'a>>,
    pub text: &'a str,
}

/// The object for `segments` in order; `k` alternatives per token; offsets count on from
/// `start`, the characters of the choice's text before the first segment.
pub fn legacy_json(
    tokenizer: &Tokenizer,
    k: usize,
    segments: &[Segment<'_>],
    start: usize,
) -> Value {
    let spell = |id: u32| {
        String::from_utf8_lossy(&tokenizer.token_bytes(id).unwrap_or_default()).into_owned()
    };
    let mut tokens = Vec::new();
    let mut token_logprobs = Vec::new();
    let mut top_logprobs = Vec::new();
    let mut text_offset = Vec::new();
    let mut start = start;
    for segment in segments {
        let ids: Vec<u32> = segment.rows.iter().map(|r| r.token).collect();
        text_offset.extend(text_offsets(tokenizer, &ids, segment.text, start));
        start += segment.text.chars().count();
        for row in &segment.rows {
            tokens.push(spell(row.token));
            // The chosen token's number is the one its alternatives give it, when it is
            // among them, so that `logprob == max(top)` tells a greedy token.
            let logprob = row.logprob.map(|lp| {
                row.top
                    .iter()
                    .find(|&&(id, _)| id == row.token)
                    .map_or(lp, |&(_, top)| top)
            });
            token_logprobs.push(logprob.map_or(Value::Null, |lp| json!(floored(lp))));
            top_logprobs.push(match logprob {
                None => Value::Null,
                Some(lp) => {
                    // Tokens spelled alike (pieces of one character) share an entry: the
                    // higher number, so that the entries' best is the distribution's best.
                    let mut best: Vec<(String, f32)> = vec![(spell(row.token), lp)];
                    for &(id, lp) in row.top.iter().take(k) {
                        let text = spell(id);
                        match best.iter_mut().find(|(t, _)| *t == text) {
                            Some(entry) => entry.1 = entry.1.max(lp),
                            None => best.push((text, lp)),
                        }
                    }
                    Value::Object(
                        best.into_iter()
                            .map(|(text, lp)| (text, json!(floored(lp))))
                            .collect::<Map<_, _>>(),
                    )
                }
            });
        }
    }
    json!({
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top_logprobs,
        "text_offset": text_offset,
    })
}

fn floored(logprob: f32) -> f32 {
    if logprob.is_nan() {
        FLOOR
    } else {
        logprob.max(FLOOR)
    }
}

/// Where each token starts in `text`, in characters, plus `start`. Each token's bytes are
/// matched against the text in turn; a control token the text does not spell (BOS) takes no
/// room, SentencePiece's added space in front of the first token is skipped, and a token
/// that does not match (text cut by a stop string) moves on by its own length, at most to the
/// end. A token that starts inside a character (byte-level pieces of one) gets that
/// character's offset.
pub fn text_offsets(tokenizer: &Tokenizer, ids: &[u32], text: &str, start: usize) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut pos = 0;
    // Characters in `text[..counted]`, `counted` a character boundary.
    let mut counted = 0;
    let mut chars = 0;
    let mut offsets = Vec::with_capacity(ids.len());
    for &id in ids {
        let mut boundary = pos;
        while !text.is_char_boundary(boundary) {
            boundary -= 1;
        }
        chars += text[counted..boundary].chars().count();
        counted = boundary;
        offsets.push(start + chars);
        let piece = tokenizer.token_bytes(id).unwrap_or_default();
        let rest = &bytes[pos..];
        if rest.starts_with(&piece) {
            pos += piece.len();
        } else if pos == 0 && piece.first() == Some(&b' ') && rest.starts_with(&piece[1..]) {
            pos += piece.len() - 1;
        } else if !tokenizer.is_special(id) {
            pos = (pos + piece.len()).min(bytes.len());
        }
    }
    offsets
}
