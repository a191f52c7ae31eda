//! Constrained decoding: a grammar (a JSON schema, a regular expression, a list of choices
//! or a Lark grammar) compiled by llguidance against the model's vocabulary, and the
//! per-sequence state that masks the logits of every step to the tokens the grammar allows,
//! learns each sampled token, and hands out the tokens the grammar forces.
//!
//! The vocabulary is given to llguidance as the bytes each token stands for; control
//! tokens are marked as special (llguidance's 0xFF prefix) so that grammar text never
//! matches them, and a grammar may still name them (`<|python_tag|>`). Every
//! end-of-generation token counts as the grammar's end.

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};
use wazn_text::{json_style, Tokenizer};

/// What a sequence's output must match.
#[derive(Clone, Debug)]
pub enum GrammarSpec {
    /// A JSON value valid under this JSON schema.
    JsonSchema(Value),
    /// Any JSON object.
    JsonObject,
    /// Text matching this regular expression (Rust `regex` syntax, `\d` and `\w` ASCII)
    /// in full.
    Regex(String),
    /// One of these strings, exactly.
    Choice(Vec<String>),
    /// A grammar in llguidance's Lark dialect.
    Lark(String),
}

/// Why a grammar cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GrammarError {
    #[error("the grammar is invalid: {0}")]
    Invalid(String),
    #[error("constrained decoding is not available for this model: {0}")]
    Unavailable(String),
}

/// Compiles grammars against one tokenizer. Building it walks the whole vocabulary once
/// (about 0.2 s for 49k tokens); compiling a grammar afterwards is usually a millisecond or
/// less.
pub struct GrammarCompiler {
    factory: ParserFactory,
    vocab: Arc<ConstraintVocab>,
}

/// What masking needs to know of the vocabulary.
#[derive(Debug)]
struct ConstraintVocab {
    /// Tokens the grammar knows; ids past it (padding rows of the output matrix) are never
    /// allowed.
    n_tokens: usize,
}

impl GrammarCompiler {
    pub fn new(tokenizer: Arc<Tokenizer>) -> Result<GrammarCompiler, GrammarError> {
        let n_tokens = tokenizer.vocab_size();
        let mut eog: Vec<u32> = tokenizer.eog_ids().to_vec();
        eog.retain(|&t| (t as usize) < n_tokens);
        let Some(&first_eog) = eog.first() else {
            return Err(GrammarError::Unavailable(
                "the vocabulary has no end-of-generation token".into(),
            ));
        };
        let words: Vec<Vec<u8>> = (0..n_tokens as u32)
            .map(|id| {
                let bytes = tokenizer.token_bytes(id).unwrap_or_default();
                if tokenizer.is_special(id) && !bytes.is_empty() {
                    let mut marked = Vec::with_capacity(bytes.len() + 1);
                    marked.push(TokTrie::SPECIAL_TOKEN_MARKER);
                    marked.extend_from_slice(&bytes);
                    marked
                } else {
                    bytes
                }
            })
            .collect();
        let info = TokRxInfo {
            vocab_size: n_tokens as u32,
            tok_eos: first_eog,
            tok_bos: tokenizer.bos_id(),
            tok_pad: None,
            tok_unk: None,
            tok_end_of_turn: None,
        };
        let trie = TokTrie::from(&info, &words).with_eos_tokens(&eog);
        let env: TokEnv = Arc::new(VocabEnv { tokenizer, trie });
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|e| GrammarError::Unavailable(e.to_string()))?;
        // Grammar errors are returned to the caller; nothing goes to stderr.
        factory.quiet();
        Ok(GrammarCompiler {
            factory,
            vocab: Arc::new(ConstraintVocab { n_tokens }),
        })
    }

    /// A constraint that applies from the first generated token.
    pub fn compile(&self, spec: &GrammarSpec) -> Result<Constraint, GrammarError> {
        Ok(Constraint {
            matcher: self.matcher(spec)?,
            vocab: Arc::clone(&self.vocab),
            trigger: None,
        })
    }

    /// A constraint that applies once the model has written `trigger` (a tool call's
    /// opening token): output before it is free, and the grammar covers what follows it.
    pub fn compile_after_token(
        &self,
        spec: &GrammarSpec,
        trigger: u32,
    ) -> Result<Constraint, GrammarError> {
        Ok(Constraint {
            matcher: self.matcher(spec)?,
            vocab: Arc::clone(&self.vocab),
            trigger: Some(Trigger {
                token: trigger,
                seen: false,
            }),
        })
    }

    fn matcher(&self, spec: &GrammarSpec) -> Result<Matcher, GrammarError> {
        let grammar = match spec {
            GrammarSpec::JsonSchema(schema) => {
                TopLevelGrammar::from_json_schema(with_json_options(schema)?)
            }
            GrammarSpec::JsonObject => {
                TopLevelGrammar::from_json_schema(with_json_options(&json!({"type": "object"}))?)
            }
            GrammarSpec::Regex(rx) => ascii_regex(rx),
            GrammarSpec::Choice(choices) => {
                if choices.is_empty() {
                    return Err(GrammarError::Invalid("the list of choices is empty".into()));
                }
                let alternatives: Vec<String> = choices.iter().map(|c| escape_regex(c)).collect();
                ascii_regex(&alternatives.join("|"))
            }
            GrammarSpec::Lark(text) => TopLevelGrammar::from_lark(text.clone()),
        };
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(|e| invalid(&e.to_string()))?;
        let matcher = Matcher::new(Ok(parser));
        match matcher.get_error() {
            Some(e) => Err(invalid(&e)),
            None => Ok(matcher),
        }
    }
}

/// A compiler's message as one line: its first, which names the problem and where; the
/// lines after it quote the grammar back.
fn invalid(message: &str) -> GrammarError {
    let first = message
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(message);
    GrammarError::Invalid(first.trim().to_string())
}

/// `schema` in wazn's JSON style ([`wazn_text::json_style`]) unless it sets its own.
fn with_json_options(schema: &Value) -> Result<Value, GrammarError> {
    match schema {
        Value::Object(_) => Ok(json_style::with_options(
            schema,
            json_style::structured_output_options(),
        )
        .unwrap_or_default()),
        // `true` / `false` are schemas too (anything / nothing).
        Value::Bool(_) => Ok(schema.clone()),
        _ => Err(GrammarError::Invalid(
            "a JSON schema must be an object or a boolean".into(),
        )),
    }
}

/// A grammar of text matching `rx` in full, with `\d` and `\w` meaning ASCII digits and
/// word characters, as in JSON Schema patterns and every peer's regex constraints (Rust's
/// `regex` reads them as Unicode classes, which lets a model write `🯸` for a digit).
fn ascii_regex(rx: &str) -> TopLevelGrammar {
    TopLevelGrammar::from_lark(format!("start: /{}/", llguidance::regex_to_lark(rx, "dw")))
}

/// `text` as a regular expression that matches it literally.
fn escape_regex(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The model's vocabulary as llguidance sees it.
struct VocabEnv {
    tokenizer: Arc<Tokenizer>,
    trie: TokTrie,
}

impl TokenizerEnv for VocabEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<u32> {
        // Text is tokenized as the model's tokenizer does (special-token text stays text);
        // bytes that are not UTF-8 fall back to the longest tokens that spell them.
        self.trie.tokenize_with_greedy_fallback(s, |text| {
            self.tokenizer
                .encode(text, false, false)
                .unwrap_or_else(|_| self.trie.greedy_tokenize(text.as_bytes()))
        })
    }
}

/// The token after which a lazy constraint applies.
#[derive(Clone, Copy, Debug)]
struct Trigger {
    token: u32,
    seen: bool,
}

/// One sequence's grammar state.
pub struct Constraint {
    matcher: Matcher,
    vocab: Arc<ConstraintVocab>,
    trigger: Option<Trigger>,
}

impl Clone for Constraint {
    /// An independent copy (each choice of a request gets one).
    fn clone(&self) -> Self {
        Constraint {
            matcher: self.matcher.deep_clone(),
            vocab: Arc::clone(&self.vocab),
            trigger: self.trigger,
        }
    }
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("trigger", &self.trigger)
            .field("stopped", &self.matcher.is_stopped())
            .finish_non_exhaustive()
    }
}

/// What the grammar says after a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on.
    Continue,
    /// The grammar is complete: nothing more may follow.
    Complete,
    /// The token broke the grammar (only possible when the mask was not applied).
    Rejected,
}

impl Constraint {
    /// Whether the grammar applies to the next token.
    fn is_active(&self) -> bool {
        self.trigger.is_none_or(|t| t.seen)
    }

    /// Leaves in `logits` [n_vocab] only the tokens the grammar allows next (the others
    /// become -∞). Returns false when the grammar allows nothing (it failed).
    pub fn mask(&mut self, logits: &mut [f32]) -> bool {
        if !self.is_active() {
            return true;
        }
        let Ok(allowed) = self.matcher.compute_mask() else {
            return false;
        };
        apply_mask(&allowed, self.vocab.n_tokens, logits)
    }

    /// Learns the sampled `token`.
    pub fn accept(&mut self, token: u32) -> Verdict {
        if !self.is_active() {
            if let Some(trigger) = &mut self.trigger {
                trigger.seen = token == trigger.token;
            }
            return Verdict::Continue;
        }
        if self.matcher.consume_token(token).is_err() {
            return Verdict::Rejected;
        }
        self.verdict()
    }

    fn verdict(&self) -> Verdict {
        if self.matcher.is_stopped() {
            Verdict::Complete
        } else if self.matcher.is_error() {
            Verdict::Rejected
        } else {
            Verdict::Continue
        }
    }

    /// The tokens the grammar now forces, at most `limit` of them, already learned.
    pub(crate) fn take_forced(&mut self, limit: usize) -> Vec<u32> {
        if !self.is_active() || limit == 0 {
            return Vec::new();
        }
        let mut forced = self.matcher.compute_ff_tokens();
        forced.truncate(limit);
        if forced.is_empty() || self.matcher.consume_tokens(&forced).is_err() {
            return Vec::new();
        }
        forced
    }

    /// Whether the grammar is complete (after [`Constraint::take_forced`]).
    pub(crate) fn is_complete(&self) -> bool {
        self.verdict() == Verdict::Complete
    }
}

/// Sets every logit the mask does not allow to -∞; returns whether any token is left.
fn apply_mask(allowed: &SimpleVob, n_tokens: usize, logits: &mut [f32]) -> bool {
    let known = n_tokens.min(logits.len());
    let mut any = false;
    let (inside, past) = logits.split_at_mut(known);
    // 32 tokens a word of the mask.
    for (chunk, &bits) in inside.chunks_mut(32).zip(allowed.as_slice()) {
        if bits == u32::MAX {
            any = true;
            continue;
        }
        for (i, logit) in chunk.iter_mut().enumerate() {
            if bits & (1 << i) == 0 {
                *logit = f32::NEG_INFINITY;
            } else {
                any = true;
            }
        }
    }
    past.fill(f32::NEG_INFINITY);
    any
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_keeps_allowed_tokens_only() {
        let mut allowed = SimpleVob::alloc(70);
        allowed.allow_token(3);
        allowed.allow_token(40);
        let mut logits = vec![1.0f32; 72];
        assert!(apply_mask(&allowed, 70, &mut logits));
        for (i, &l) in logits.iter().enumerate() {
            assert_eq!(l.is_finite(), i == 3 || i == 40, "token {i}");
        }
        let none = SimpleVob::alloc(70);
        assert!(!apply_mask(&none, 70, &mut vec![0.0; 70]));
    }

    #[test]
    fn choices_are_matched_literally() {
        assert_eq!(escape_regex("a.b|c"), r"a\.b\|c");
        assert_eq!(escape_regex("(x)"), r"\(x\)");
    }
}
