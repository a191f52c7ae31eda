//! Token ids → text, one token at a time, for streaming.
//!
//! A token may end in the middle of a UTF-8 character (byte-level BPE pieces, `<0xNN>` byte
//! tokens), so the bytes of a character can arrive over several tokens. The detokenizer holds
//! such an unfinished character back until its last byte arrives, and replaces bytes that can
//! never form a character with U+FFFD, exactly where `Tokenizer::decode` would.

use crate::Tokenizer;

/// Streams the text of a token sequence; the concatenation of everything [`push`] and
/// [`finish`] return equals `Tokenizer::decode` of the whole sequence. It holds no
/// reference to the tokenizer, so a sequence can own one next to a shared tokenizer.
///
/// [`push`]: Detokenizer::push
/// [`finish`]: Detokenizer::finish
#[derive(Clone, Debug)]
pub struct Detokenizer {
    skip_special: bool,
    /// Bytes received but not yet emitted: at most the start of one unfinished character.
    pending: Vec<u8>,
    /// Nothing has been emitted yet (SentencePiece's leading space is still to be stripped).
    at_start: bool,
}

impl Detokenizer {
    /// `skip_special` leaves out control and unknown tokens, as `decode` does.
    pub fn new(skip_special: bool) -> Detokenizer {
        Detokenizer {
            skip_special,
            pending: Vec::new(),
            at_start: true,
        }
    }

    /// The text that `id` completes; empty while a character is still unfinished. An id outside
    /// the vocabulary adds nothing (`decode` would refuse it).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> String {
        if self.skip_special && tokenizer.is_special(id) {
            return String::new();
        }
        let Some(piece) = tokenizer.piece(id) else {
            return String::new();
        };
        self.pending.extend_from_slice(piece);
        if self.at_start && !self.pending.is_empty() {
            self.at_start = false;
            if tokenizer.strips_leading_space() && self.pending[0] == b' ' {
                self.pending.remove(0);
            }
        }
        self.take_complete()
    }

    /// Whatever is still held back; an unfinished character becomes U+FFFD.
    pub fn finish(mut self) -> String {
        let mut out = self.take_complete();
        if !self.pending.is_empty() {
            out.push_str(&String::from_utf8_lossy(&self.pending));
        }
        out
    }

    /// Emits every complete character in `pending` (and U+FFFD for each invalid stretch, as
    /// `String::from_utf8_lossy` does), keeping only an unfinished character at the end.
    fn take_complete(&mut self) -> String {
        let mut out = String::new();
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(valid) => {
                    out.push_str(valid);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid_len = e.valid_up_to();
                    let valid = &self.pending[start..start + valid_len];
                    // from_utf8 just accepted these bytes, so this cannot fail.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    start += valid_len;
                    match e.error_len() {
                        Some(n_bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            start += n_bad;
                        }
                        // The end is the start of a character that may still be completed.
                        None => break,
                    }
                }
            }
        }
        self.pending.drain(..start);
        out
    }
}
